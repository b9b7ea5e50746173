package env

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tetherkube/tether/daemon"
)

// Formats of tether env.
const (
	FormatDotenv = "dotenv"
	FormatShell  = "shell"
	FormatJSON   = "json"
	FormatYAML   = "yaml"
)

// Formats lists them, the default first.
var Formats = []string{FormatDotenv, FormatShell, FormatJSON, FormatYAML}

// hiddenValue stands for a secret value not shown on a terminal.
const hiddenValue = "(hidden: --show-secrets shows it, -f FILE writes it)"

// writeEnv writes vars in format. hide: a secret's value is left out (its
// line is a comment in dotenv and shell, the value says so in JSON and
// YAML). sources: each variable's source as a comment (dotenv, shell), or
// JSON and YAML as a list of {name, value, source, secret}.
func writeEnv(w io.Writer, format string, vars []daemon.EnvVar, hide, sources bool) error {
	var b bytes.Buffer
	switch format {
	case FormatDotenv, FormatShell:
		for _, v := range vars {
			if sources {
				fmt.Fprintf(&b, "# %s\n", v.Source)
			}
			switch {
			case hide && v.Secret:
				fmt.Fprintf(&b, "# %s=%s\n", v.Name, hiddenValue)
			case format == FormatDotenv:
				fmt.Fprintf(&b, "%s=%s\n", v.Name, dotenvQuote(v.Value))
			case !shellName.MatchString(v.Name):
				fmt.Fprintf(&b, "# %s: not a shell variable name; left out (the dotenv and json formats keep it)\n", v.Name)
			default:
				fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
			}
		}
	case FormatJSON, FormatYAML:
		var doc []byte
		var err error
		if sources {
			list := make([]daemon.EnvVar, len(vars))
			for i, v := range vars {
				if hide && v.Secret {
					v.Value = hiddenValue
				}
				list[i] = v
			}
			doc, err = json.MarshalIndent(list, "", "  ")
		} else {
			doc, err = orderedObject(vars, hide)
		}
		if err != nil {
			return err
		}
		if format == FormatYAML {
			if doc, err = yaml.JSONToYAML(doc); err != nil {
				return err
			}
		} else {
			doc = append(doc, '\n')
		}
		b.Write(doc)
	default:
		return fmt.Errorf("format %q", format)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// orderedObject is a JSON object of the variables in their order.
func orderedObject(vars []daemon.EnvVar, hide bool) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{")
	for i, v := range vars {
		if i > 0 {
			b.WriteString(",")
		}
		val := v.Value
		if hide && v.Secret {
			val = hiddenValue
		}
		k, err := json.Marshal(v.Name)
		if err != nil {
			return nil, err
		}
		x, err := json.Marshal(val)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n  %s: %s", k, x)
	}
	if len(vars) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("}")
	return b.Bytes(), nil
}

var (
	shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// bare: characters every dotenv reader takes as they are, unquoted.
	bare = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]*$`)
)

// shellQuote quotes s for sh, bash and zsh: in single quotes nothing is
// special, and a single quote is closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dotenvQuote writes a value that VS Code's envFile, Node's dotenv,
// direnv's dotenv and python-dotenv read back as it is, where they agree:
// bare when nothing in it is special; in single quotes (taken literally:
// no escapes, no $ expansion) when it has no single quote or newline;
// else in double quotes with \n, \" and \\ escapes, which VS Code reads
// back for newlines only (see docs/env.md).
func dotenvQuote(s string) string {
	switch {
	case s == "":
		return ""
	case bare.MatchString(s) && !strings.HasPrefix(s, "#"):
		return s
	case !strings.ContainsAny(s, "'\n\r"):
		return "'" + s + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}
