package netns

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/tetherkube/tether/internal/errdefs"
)

type fakeHost struct {
	files map[string]string
	tun   error
	ns    error // TryNamespaces
}

func (h fakeHost) ReadFile(p string) ([]byte, error) {
	v, ok := h.files[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return []byte(v + "\n"), nil
}

func (h fakeHost) OpenTUN() error { return h.tun }

func (h fakeHost) TryNamespaces() error { return h.ns }

func TestDiagnose(t *testing.T) {
	ok := map[string]string{
		"/proc/sys/user/max_user_namespaces": "63432",
		"/proc/self/ns/user":                 "",
		"/proc/self/ns/net":                  "",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range ok {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		host fakeHost
		want []string // in the message; none: nil error
	}{
		{"all fine", fakeHost{files: ok}, nil},
		{"Debian's switch on", fakeHost{files: with("/proc/sys/kernel/unprivileged_userns_clone", "1")}, nil},
		{"AppArmor off", fakeHost{files: with("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0")}, nil},
		{"no user namespaces", fakeHost{files: with("/proc/sys/user/max_user_namespaces", "0")},
			[]string{"user.max_user_namespaces=0", "sudo sysctl -w user.max_user_namespaces=15000"}},
		{"Debian's switch off", fakeHost{files: with("/proc/sys/kernel/unprivileged_userns_clone", "0")},
			[]string{"kernel.unprivileged_userns_clone=0", "sudo sysctl -w kernel.unprivileged_userns_clone=1"}},
		{"Ubuntu 24.04 AppArmor, tether's profile allows userns", fakeHost{files: with("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")}, nil},
		{"Ubuntu 24.04 AppArmor", fakeHost{files: with("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"), ns: errors.New("bring lo up: operation not permitted")},
			[]string{"AppArmor", "kernel.apparmor_restrict_unprivileged_userns=1", "userns,", "apparmor_parser -r", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"}},
		{"kernel without namespaces", fakeHost{files: map[string]string{}},
			[]string{"no user or network namespaces"}},
		{"no /dev/net/tun", fakeHost{files: ok, tun: &fs.PathError{Op: "open", Path: "/dev/net/tun", Err: fs.ErrNotExist}},
			[]string{"no /dev/net/tun", "modprobe tun"}},
		{"/dev/net/tun 0600", fakeHost{files: ok, tun: &fs.PathError{Op: "open", Path: "/dev/net/tun", Err: fs.ErrPermission}},
			[]string{"sudo chmod 0666 /dev/net/tun"}},
		{"/dev/net/tun broken", fakeHost{files: ok, tun: errors.New("no such device")},
			[]string{"no such device", "modprobe tun"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := diagnose(tc.host)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("diagnose: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("diagnose: nil, want an error")
			}
			if !errors.Is(err, errdefs.ErrUser) {
				t.Errorf("diagnose: %v is not a user error", err)
			}
			for _, w := range append(tc.want, "--network proxy") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("diagnose: %q lacks %q", err, w)
				}
			}
		})
	}
}
