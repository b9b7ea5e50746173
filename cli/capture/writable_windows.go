//go:build windows

package capture

import "os"

// writable reports whether the user may create files in dir: Windows has
// no access(2), so it creates and removes a file there.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".tether-write-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
