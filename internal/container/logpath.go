package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// logPath joins the pod's log directory and the container's log path, and
// creates the directories between them. An empty log_path discards output
// (critest's default, CRI-CONTRACT.md).
//
// The log file is written by the supervisor as root, so the path must not
// lead it outside the log directory: log_path must be relative and stay
// inside, and the log directory itself and everything below it must be
// real directories, never symlinks — a container with a hostPath on
// /var/log/pods could otherwise plant a link to /etc. The parents of the
// log directory may be symlinks: that is the node's layout (/var/log on
// another disk), not the request's. crilog opens the file itself with
// O_NOFOLLOW, for a link planted after this check.
func logPath(dir, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	if strings.IndexByte(dir, 0) >= 0 || strings.IndexByte(rel, 0) >= 0 {
		return "", fmt.Errorf("log_directory %q or log_path %q contains NUL: %w", dir, rel, errdefs.ErrInvalidArgument)
	}
	if dir == "" {
		if !filepath.IsAbs(rel) {
			return "", fmt.Errorf("log_path %q is relative and the pod has no log_directory: %w", rel, errdefs.ErrInvalidArgument)
		}
		p := filepath.Clean(rel)
		return p, checkLogFile(p, rel)
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("log_directory %q must be absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("log_path %q must be relative to the log_directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	dir = filepath.Clean(dir)
	p := filepath.Join(dir, rel)
	if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("log_path %q escapes the log directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("log directory: %w", err)
	}
	// The log directory and each directory below it, created if missing
	// (Mkdir never follows a symlink in its last component) and then
	// checked with Lstat.
	dirs := []string{dir}
	if sub, _ := filepath.Rel(dir, filepath.Dir(p)); sub != "." {
		for _, part := range strings.Split(sub, string(filepath.Separator)) {
			dirs = append(dirs, filepath.Join(dirs[len(dirs)-1], part))
		}
	}
	for _, cur := range dirs {
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("log directory: %w", err)
		}
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", fmt.Errorf("log directory: %w", err)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("log_path %q: %s is a symlink or not a directory: %w", rel, cur, errdefs.ErrInvalidArgument)
		}
	}
	return p, checkLogFile(p, rel)
}

// checkLogFile refuses an existing log file that is not a regular file: a
// symlink would be followed, and opening a FIFO would block the supervisor.
func checkLogFile(p, rel string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("log_path %q: %s exists and is not a regular file: %w", rel, p, errdefs.ErrInvalidArgument)
	}
	return nil
}
