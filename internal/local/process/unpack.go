package process

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds the links followed resolving one path (as Linux's
// ELOOP does).
const maxSymlinks = 40

// unpackTar writes the tar stream r (a flattened image filesystem) under
// root. Entries naming a path outside root are rejected, and symlinks are
// resolved inside root, so no entry can write outside it. Regular files,
// directories, symlinks (as written, absolute ones included) and hard
// links are kept with their modes; devices and fifos, which need root, are
// skipped; owners are not kept. Directories keep owner rwx so that the
// cache stays removable.
func unpackTar(r io.Reader, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the image filesystem: %w", err)
		}
		rel, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if rel == "." {
			if hdr.Typeflag == tar.TypeDir {
				dirs = append(dirs, dirMode{root, mode})
			}
			continue
		}
		parent, err := secureJoin(root, path.Dir(rel))
		if err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		target := filepath.Join(parent, path.Base(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
				dirs = append(dirs, dirMode{target, mode})
				continue
			}
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Mkdir(target, 0o700); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirMode{target, mode})
		case tar.TypeReg:
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := writeFile(target, tr, mode); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			_ = os.Chtimes(target, hdr.AccessTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			linkRel, err := entryPath(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("tar entry %q: hard link: %w", hdr.Name, err)
			}
			src, err := secureJoin(root, linkRel)
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			if err := removeExisting(target); err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		default:
			// Devices and fifos need privileges; metadata entries carry
			// nothing to write.
			continue
		}
	}
	// Deepest first, so that a read-only directory is closed after its
	// children are written.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode|0o700); err != nil {
			return err
		}
	}
	return nil
}

// entryPath cleans a tar entry name into a path relative to the root
// ("." for the root itself); names that climb out of it are rejected.
func entryPath(name string) (string, error) {
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("tar entry %q points outside the image root", name)
	}
	p = strings.TrimLeft(p, "/")
	if p == "" {
		p = "."
	}
	return path.Clean(p), nil
}

func removeExisting(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return os.RemoveAll(p)
	}
	return os.Remove(p)
}

func writeFile(p string, r io.Reader, mode fs.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Chmod, not the open mode: the umask must not apply, and setuid bits
	// need it.
	return os.Chmod(p, mode)
}

// secureJoin resolves rel (slash-separated) under root as if root were
// "/": symlinks, absolute or relative, are followed but never leave root,
// and ".." stops at root. Components that do not exist are kept as they
// are. The result is a host path inside root.
func secureJoin(root, rel string) (string, error) {
	resolved := "" // clean, relative to root, without ".."
	pending := strings.Split(filepath.ToSlash(rel), "/")
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			if resolved == "." {
				resolved = ""
			}
			continue
		}
		next := path.Join(resolved, c)
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(next)))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// Missing or not a link: taken as it is.
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("resolving %q: too many levels of symbolic links", rel)
		}
		target, err := os.Readlink(filepath.Join(root, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			resolved = ""
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return filepath.Join(root, filepath.FromSlash(resolved)), nil
}
