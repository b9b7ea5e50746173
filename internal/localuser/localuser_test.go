package localuser

import (
	"os"
	"strings"
	"testing"
)

func TestOwner(t *testing.T) {
	name := Name()
	if name == "" || strings.ContainsAny(name, `\@`) {
		t.Errorf("Name() = %q: want a plain user name", name)
	}
	host, _ := os.Hostname()
	if got := Owner(); host != "" && got != name+"@"+host {
		t.Errorf("Owner() = %q, want %q", got, name+"@"+host)
	}
}
