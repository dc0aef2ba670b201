package target

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DiskUsage is the space the runtime's root dir takes, as du counts it:
// allocated blocks, each hard-linked inode once. Mount points below the
// root (container rootfs overlays) are not crossed.
func (t *Target) DiskUsage() (int64, error) {
	root, err := os.Stat(t.RootDir)
	if err != nil {
		return 0, err
	}
	dev := root.Sys().(*syscall.Stat_t).Dev
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err = filepath.WalkDir(t.RootDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Files come and go under a live runtime (temp files, GC).
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if d.IsDir() && uint64(st.Dev) != uint64(dev) {
			return filepath.SkipDir
		}
		k := inode{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		total += st.Blocks * 512
		return nil
	})
	return total, err
}
