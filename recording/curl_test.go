package recording

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// curlCall is what a curl command line asks for.
type curlCall struct {
	Method, URL string
	Headers     []string
	Body        string
}

// fakeCurl replaces curl with a shell function that writes each of its
// arguments to a file of its own, numbered from 1 (stdin for "@-").
const fakeCurl = `curl() {
	n=0
	for a in "$@"; do
		n=$((n+1))
		if [ "$a" = "@-" ]; then cat >"$ARGS/$n"; else printf '%s' "$a" >"$ARGS/$n"; fi
	done
}
`

// runCurl runs script with shell (after sh -n accepts it) and returns the
// argv of each curl call, interpreted as curl would.
func runCurl(t testing.TB, shell, script string) []curlCall {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(file, []byte(fakeCurl+script), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(shell, "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("%s -n rejects the script: %v\n%s\n%s", shell, err, out, script)
	}
	cmd := exec.Command(shell, file)
	cmd.Env = append(os.Environ(), "ARGS="+dir)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("%s: %v, output %q\n%s", shell, err, out, script)
	}
	var argv []string
	for i := 1; ; i++ {
		b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			break
		}
		argv = append(argv, string(b))
	}
	var c curlCall
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		next := func() string {
			i++
			if i >= len(argv) {
				t.Fatalf("%s needs a value: %q", a, argv)
			}
			return argv[i]
		}
		switch {
		case a == "-X" || a == "--request":
			c.Method = next()
		case a == "--url":
			c.URL = next()
		case a == "-H" || a == "--header":
			c.Headers = append(c.Headers, next())
		case a == "--data-binary":
			c.Body = next()
		case a == "-g" || a == "--globoff":
		case strings.HasPrefix(a, "-"):
			t.Fatalf("unexpected option %q in %q", a, argv)
		default:
			c.URL = a
		}
	}
	return []curlCall{c}
}

var hostile = []string{
	"`id`", "$(id)", "a|b&c;d", "it's", `say "hi"`, `back\slash\`, "two\nlines", "cr\rlf", "\x1b]0;pwned\x07\x1b[2J",
	"ünïcödé ✓ 日本", "\u202egnp.exe", "trailing newline\n\n", "-X", "@/etc/passwd", "{a,b}[1-2]", "\xff\xfe binary",
}

func TestCurlRunsAsRecorded(t *testing.T) {
	shells := []string{"/bin/sh"}
	if p, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, p)
	}
	for i, s := range hostile {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			method := s
			if strings.ContainsAny(s, "\x00") {
				method = "GET"
			}
			e := &Exchange{ID: 7, Request: Message{Method: method, Target: "/p?q=" + s,
				Header: http.Header{"X-Value": {s}, "X-Plain": {"v"}}, Body: []byte(s + "\x00\x01end")}}
			want := curlCall{Method: method, URL: "http://h:1/p?q=" + s, Headers: []string{"X-Plain: v", "X-Value: " + s}, Body: s + "\x00\x01end"}
			script := Curl(e, "http://h:1/")
			for _, sh := range shells {
				if diff := cmp.Diff([]curlCall{want}, runCurl(t, sh, script)); diff != "" {
					t.Errorf("%s (-want +got)\n%s\n%s", sh, diff, script)
				}
			}
			if strings.ContainsFunc(script, func(r rune) bool { return r != '\n' && needsEscape(r) }) {
				t.Errorf("the command line holds control characters a terminal would act on: %q", script)
			}
		})
	}
}

func TestCurlNotes(t *testing.T) {
	e := sample()[0]
	e.Request.Header["Bad\nName"] = []string{Redacted}
	e.Request.Truncated = true
	got := Curl(e, "http://localhost:8080/")
	want := `printf '%s' '{"item":"kettle"}' | curl -g -X 'POST' --url 'http://localhost:8080/orders?coupon=HALF&x=1' -H 'Content-Type: application/json' --data-binary @-
# the body was truncated at record time
# redacted, add with -H: Authorization, Bad\nName`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// FuzzShellQuote: any string, quoted, reaches a program as the same
// argument.
func FuzzShellQuote(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			return // no argument can hold a NUL
		}
		var w shellWords
		script := "printf '%s' " + w.word(s) + ` >"$ARGS/1"`
		script = strings.Join(w.setup, "\n") + "\n" + script
		dir := t.TempDir()
		file := filepath.Join(dir, "script")
		if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", file)
		cmd.Env = []string{"ARGS=" + dir}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v %s\n%s", err, out, script)
		}
		got, _ := os.ReadFile(filepath.Join(dir, "1"))
		if string(got) != s {
			t.Fatalf("got %q, want %q\n%s", got, s, script)
		}
	})
}
