package snapshot

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

const usageFile = "usage.json"

func readUsage(path string) (Usage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if err := json.Unmarshal(data, &u); err != nil {
		return Usage{}, fmt.Errorf("read %s: %w", path, err)
	}
	return u, nil
}

// diskUsage measures the tree under dir (dir itself not counted), in the
// same terms as archive.Stats: apparent size of regular files, hard links
// once, one inode per directory entry.
func diskUsage(dir string) (Usage, error) {
	var u Usage
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && os.IsNotExist(err) {
				return nil // removed while we walked (a running container)
			}
			return err
		}
		if p == dir {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && st.Nlink > 1 && !fi.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Inodes++
		if fi.Mode().IsRegular() {
			u.Bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return u, nil
}
