package netns

import "testing"

func TestPodHosts(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"Debian", "passwd: files\nhosts: files dns\n", "passwd: files\nhosts: files dns\n", false},
		{"Fedora", "passwd: files systemd\nhosts:      files myhostname resolve [!UNAVAIL=return] dns\n", "passwd: files systemd\nhosts: files dns\n", true},
		{"Ubuntu desktop", "hosts: files mdns4_minimal [NOTFOUND=return] dns\n", "hosts: files dns\n", true},
		{"no hosts line", "passwd: files\n", "passwd: files\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := podHosts([]byte(tc.in))
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("podHosts = %q, %v; want %q, %v", got, changed, tc.want, tc.changed)
			}
		})
	}
}
