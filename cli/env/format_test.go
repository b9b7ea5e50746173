package env

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/tetherkube/tether/daemon"
)

// tricky are values that break naive quoting.
var tricky = []daemon.EnvVar{
	{Name: "PLAIN", Value: "db.shop.svc:5432"},
	{Name: "EMPTY", Value: ""},
	{Name: "SPACES", Value: "  two  spaces  "},
	{Name: "HASH", Value: "#not a comment"},
	{Name: "MID_HASH", Value: "a #b"},
	{Name: "DOLLAR", Value: "$HOME and ${HOME} and $(HOME)"},
	{Name: "DQUOTE", Value: `say "hi"`},
	{Name: "SQUOTE", Value: "it's"},
	{Name: "BACKSLASH", Value: `C:\path\n`},
	{Name: "NEWLINE", Value: "line1\nline2"},
	{Name: "MIXED", Value: "it's \"$x\"\n\\end"},
	{Name: "URL", Value: "postgres://u:p@db/x?sslmode=disable&a=b"},
	{Name: "EQUALS", Value: "a=b=c"},
	{Name: "BACKTICK", Value: "`id` ;|&<>"},
	{Name: "UTF8", Value: "ünïcødé ✓"},
	{Name: "dotted.name", Value: "v"},
}

func format(t *testing.T, f string, vars []daemon.EnvVar, sources bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeEnv(&b, f, vars, false, sources); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestShellRoundTrip sources the shell format in sh (dash) and bash and
// compares every value the shell then holds.
func TestShellRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env.sh")
	if err := os.WriteFile(file, []byte(format(t, FormatShell, tricky, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sh := range []string{"sh", "bash"} {
		var script strings.Builder
		script.WriteString(". " + file + "\n")
		for _, v := range tricky {
			if shellName.MatchString(v.Name) {
				script.WriteString(`printf '%s\0' "$` + v.Name + `"` + "\n")
			}
		}
		cmd := exec.Command(sh, "-c", script.String())
		cmd.Env = []string{}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", sh, err)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		var want []string
		for _, v := range tricky {
			if shellName.MatchString(v.Name) {
				want = append(want, v.Value)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s read back (-want +got):\n%s", sh, diff)
		}
	}
	if !strings.Contains(format(t, FormatShell, tricky, false), "# dotted.name: not a shell variable name") {
		t.Error("a name the shell cannot take is not said to be left out")
	}
}

// vscodeEnvFile parses a file as VS Code's debugger reads "envFile": a
// line NAME=VALUE; double quotes are stripped and \n in them is a newline;
// single quotes are stripped; nothing else is an escape.
func vscodeEnvFile(s string) map[string]string {
	line := regexp.MustCompile(`^\s*([\w.\-]+)\s*=\s*(.*)?\s*$`)
	out := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := m[2]
		if len(v) > 0 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.ReplaceAll(v, `\n`, "\n")
		}
		out[m[1]] = regexp.MustCompile(`(^['"]|['"]$)`).ReplaceAllString(v, "")
	}
	return out
}

// TestDotenvVSCode: every value VS Code's envFile can hold reads back as
// it is (it knows no escape but \n in double quotes, so a value with a
// newline and a quote or backslash cannot be written for it).
func TestDotenvVSCode(t *testing.T) {
	got := vscodeEnvFile(format(t, FormatDotenv, tricky, true))
	for _, v := range tricky {
		if strings.Contains(v.Value, "\n") && strings.ContainsAny(v.Value, `\"`) {
			continue
		}
		if got[v.Name] != v.Value {
			t.Errorf("%s: VS Code reads %q, want %q", v.Name, got[v.Name], v.Value)
		}
	}
}

func TestDotenvQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		"":           "",
		"a b":        "'a b'",
		"#x":         "'#x'",
		"$HOME":      "'$HOME'",
		"it's":       `"it's"`,
		"a\nb":       `"a\nb"`,
		`q"\`:        `'q"\'`,
		"it's\n\"\\": `"it's\n\"\\"`,
	} {
		if got := dotenvQuote(in); got != want {
			t.Errorf("dotenvQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestJSONAndYAML(t *testing.T) {
	var obj map[string]string
	if err := json.Unmarshal([]byte(format(t, FormatJSON, tricky, false)), &obj); err != nil {
		t.Fatal(err)
	}
	var fromYAML map[string]string
	if err := yaml.Unmarshal([]byte(format(t, FormatYAML, tricky, false)), &fromYAML); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, v := range tricky {
		want[v.Name] = v.Value
	}
	if diff := cmp.Diff(want, obj); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, fromYAML); diff != "" {
		t.Errorf("yaml (-want +got):\n%s", diff)
	}
	// The object keeps the variables' order.
	if s := format(t, FormatJSON, tricky[:2], false); s != "{\n  \"PLAIN\": \"db.shop.svc:5432\",\n  \"EMPTY\": \"\"\n}\n" {
		t.Errorf("json = %q", s)
	}
	var list []daemon.EnvVar
	if err := json.Unmarshal([]byte(format(t, FormatJSON, result.Vars, true)), &list); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(result.Vars, list); diff != "" {
		t.Errorf("json --sources (-want +got):\n%s", diff)
	}
}
