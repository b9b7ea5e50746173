package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// setupMounts makes every mount of the new mount namespace private (so
// nothing propagates back to the machine) and bind-mounts the resolv.conf
// and the Files read-only.
func setupMounts(cfg *initConfig) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	m := &mounter{staging: cfg.Staging}
	if cfg.ResolvConf != "" {
		if err := m.bindRO(cfg.ResolvConf, "/etc/resolv.conf"); err != nil {
			return fmt.Errorf("mount the pod's resolv.conf: %w", err)
		}
	}
	if cfg.NSSwitch != "" {
		if err := m.bindRO(cfg.NSSwitch, "/etc/nsswitch.conf"); err != nil {
			return fmt.Errorf("mount nsswitch.conf: %w", err)
		}
	}
	targets := make([]string, 0, len(cfg.Files))
	for t := range cfg.Files {
		targets = append(targets, t)
	}
	sort.Strings(targets) // parents before children
	for _, t := range targets {
		if err := m.bindRO(cfg.Files[t], t); err != nil {
			return fmt.Errorf("mount %s at %s: %w", cfg.Files[t], t, err)
		}
	}
	return nil
}

type mounter struct {
	staging string
	n       int
}

// bindRO bind-mounts src read-only at dst, creating dst first if it does
// not exist (see ensure).
func (m *mounter) bindRO(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	dst, err = m.ensure(filepath.Clean(dst), st.IsDir())
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dst, &sfs); err != nil {
		return err
	}
	// A remount in a user namespace must keep the flags the mount was
	// locked with (nosuid, nodev, noexec, atime).
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [][2]int64{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if sfs.Flags&f[0] != 0 {
			flags |= uintptr(f[1])
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}

// ensure returns dst with its symlinks resolved, after creating it (a
// directory or an empty file) when it is missing. The machine's
// directories are not writable, so the deepest existing ancestor is first
// covered, in this mount namespace only, with a tmpfs that mirrors it:
// every entry bind-mounted from the original, symlinks copied.
func (m *mounter) ensure(dst string, dir bool) (string, error) {
	if p, err := filepath.EvalSymlinks(dst); err == nil {
		return p, nil
	}
	// Find the deepest existing ancestor and what is missing below it.
	anc, rest := dst, ""
	for {
		parent := filepath.Dir(anc)
		rest = filepath.Join(filepath.Base(anc), rest)
		anc = parent
		if p, err := filepath.EvalSymlinks(anc); err == nil {
			anc = p
			break
		}
		if anc == "/" {
			return "", fmt.Errorf("cannot resolve %s", dst)
		}
	}
	if anc == "/" {
		return "", fmt.Errorf("cannot create %s: its top directory does not exist and / is not mirrored", dst)
	}
	// The entry to create is left out of the mirror: it may be a dangling
	// symlink (/etc/resolv.conf to a stopped systemd-resolved's file).
	first, _, _ := strings.Cut(rest, string(filepath.Separator))
	if err := m.mirror(anc, first); err != nil {
		return "", fmt.Errorf("cover %s to create %s: %w", anc, dst, err)
	}
	full := filepath.Join(anc, rest)
	if dir {
		return full, os.MkdirAll(full, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	return full, f.Close()
}

func (m *mounter) mirror(dir, skip string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m.n++
	stage := filepath.Join(m.staging, "m"+strconv.Itoa(m.n))
	if err := os.Mkdir(stage, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", stage, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount a tmpfs: %w", err)
	}
	for _, e := range entries {
		if e.Name() == skip {
			continue
		}
		src, dst := filepath.Join(dir, e.Name()), filepath.Join(stage, e.Name())
		switch t := e.Type(); {
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			continue
		case t.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return err
			}
		default:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			f.Close()
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := os.Chmod(stage, st.Mode().Perm()); err != nil {
		return err
	}
	if err := unix.Mount(stage, dir, "", unix.MS_MOVE, ""); err != nil {
		if err2 := unix.Mount(stage, dir, "", unix.MS_BIND|unix.MS_REC, ""); err2 != nil {
			return errors.Join(fmt.Errorf("move the tmpfs over %s: %w", dir, err), err2)
		}
	}
	return nil
}
