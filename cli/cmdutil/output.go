package cmdutil

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Output formats every command accepts with -o.
const (
	OutputText = ""
	OutputJSON = "json"
	OutputYAML = "yaml"
)

// AddOutputFlag registers -o/--output on cmd, writing into target.
func AddOutputFlag(cmd *cobra.Command, target *string) {
	cmd.Flags().StringVarP(target, "output", "o", OutputText, "output format: json or yaml (default: text for people)")
}

// ValidateOutput checks an -o value.
func ValidateOutput(format string) error {
	switch format {
	case OutputText, OutputJSON, OutputYAML:
		return nil
	default:
		return errdefs.User("unknown output format %q: use -o json or -o yaml, or leave -o out for text", format)
	}
}

// PrintStructured writes v as JSON or YAML, as format asks.
func PrintStructured(w io.Writer, format string, v any) error {
	switch format {
	case OutputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case OutputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	default:
		return fmt.Errorf("PrintStructured called with format %q", format)
	}
}

// PrintItem writes one item of a stream (a packet, a DNS answer, a replayed
// request) as JSON or YAML: JSON values one after another, as jq reads
// them, YAML as documents each opened by "---", so the stream parses.
func PrintItem(w io.Writer, format string, v any) error {
	if format == OutputYAML {
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
	}
	return PrintStructured(w, format, v)
}
