// Package atomicfile writes files so that a reader, or berthd after a crash at
// any instant, sees either the old content or the new one, never a mix.
package atomicfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-cri/berth/internal/fault"
)

// Write replaces path with data: temp file in the same directory, fsync,
// rename, fsync of the directory (so the rename itself survives a power cut).
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// WriteVolatile is Write without the fsyncs, for files under the state
// directory: they describe what runs now, which no reboot preserves (the
// start-up reconciliation throws such state away), while a crash of berthd
// or the supervisor keeps the page cache. Readers and a restarted process
// still see the old content or the new, never a mix; only a power cut may
// lose the latest version. Two fsyncs cost ~1 ms here, several times per
// container create.
func WriteVolatile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) error {
	f, err := writeTemp(path, data, perm, durable)
	if err != nil {
		return err
	}
	f.Close()
	if !durable {
		return nil
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes data to a temp file beside path (fsynced if durable)
// and renames it over path. It returns the file, still open, renamed.
func writeTemp(path string, data []byte, perm os.FileMode, durable bool) (*os.File, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("write %s: sync: %w", path, err)
		}
	}
	fault.Point("state.mid-write")
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return f, nil
}

// WriteJSON is Write of v encoded as indented JSON.
func WriteJSON(path string, v any, perm os.FileMode) error {
	data, err := encodeJSON(path, v)
	if err != nil {
		return err
	}
	return Write(path, data, perm)
}

// WriteJSONVolatile is WriteVolatile of v encoded as indented JSON.
func WriteJSONVolatile(path string, v any, perm os.FileMode) error {
	data, err := encodeJSON(path, v)
	if err != nil {
		return err
	}
	return WriteVolatile(path, data, perm)
}

func encodeJSON(path string, v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", path, err)
	}
	return append(data, '\n'), nil
}

// SyncDir fsyncs a directory, making renames and unlinks in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether name is a leftover temp file of Write (a crash
// between create and rename); start-up reconciliation removes those.
func IsTemp(name string) bool {
	base := filepath.Base(name)
	return len(base) > 1 && base[0] == '.' && containsTmp(base)
}

func containsTmp(s string) bool {
	for i := 0; i+5 <= len(s); i++ {
		if s[i:i+5] == ".tmp-" {
			return true
		}
	}
	return false
}
