package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestLogPathStaysInside pins the hostile-input rules of log_directory and
// log_path (issue 9): nothing may lead the supervisor outside the log
// directory.
func TestLogPathStaysInside(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "outside")
	os.Mkdir(outside, 0o755)
	logs := filepath.Join(root, "logs")
	os.Mkdir(logs, 0o755)
	os.Symlink(outside, filepath.Join(logs, "linkdir"))
	os.Symlink(filepath.Join(outside, "f"), filepath.Join(logs, "link.log"))
	os.Symlink(outside, filepath.Join(root, "podlink"))
	// A symlinked parent of the log directory is the node's layout.
	os.Symlink(logs, filepath.Join(root, "varlog"))

	for _, tc := range []struct {
		name, dir, rel string
		want           string // "" with err
		err            string
	}{
		{"empty discards", logs, "", "", ""},
		{"plain", logs, "c/0.log", filepath.Join(logs, "c/0.log"), ""},
		{"dot dot inside", logs, "c/../d.log", filepath.Join(logs, "d.log"), ""},
		{"parent is a symlink", filepath.Join(root, "varlog", "pod"), "c/0.log", filepath.Join(root, "varlog", "pod", "c/0.log"), ""},
		{"no log directory, absolute", "", filepath.Join(logs, "abs.log"), filepath.Join(logs, "abs.log"), ""},
		{"escape", logs, "../../etc/x", "", "escapes"},
		{"escape to the directory itself", logs, "c/../..", "", "escapes"},
		{"the directory itself", logs, ".", "", "escapes"},
		{"absolute with a log directory", logs, "/etc/x", "", "must be relative"},
		{"relative without a log directory", "", "x.log", "", "relative"},
		{"relative log directory", "logs", "x.log", "", "absolute"},
		{"NUL", logs, "a\x00b", "", "NUL"},
		{"symlinked subdirectory", logs, "linkdir/0.log", "", "symlink"},
		{"symlinked log directory", filepath.Join(root, "podlink"), "0.log", "", "symlink"},
		{"symlinked log file", logs, "link.log", "", "not a regular file"},
		{"symlinked file, no log directory", "", filepath.Join(logs, "link.log"), "", "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := logPath(tc.dir, tc.rel)
			if tc.err != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want InvalidArgument with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was created outside the log directory: %v", ents)
	}
}
