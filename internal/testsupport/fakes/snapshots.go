package fakes

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/userns"
)

// Snapshots is a snapshot store whose rootfs are plain directories under
// Root: "mounting" one makes its merged directory.
type Snapshots struct {
	R    *Recorder
	Root string

	mu   sync.Mutex
	keys map[string]string // key -> "prepared" or "mounted"
}

// Keys returns every rootfs and read-only snapshot and its state.
func (f *Snapshots) Keys() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.keys)
}

func (f *Snapshots) set(key, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]string{}
	}
	f.keys[key] = state
}

func (f *Snapshots) mount(name, key string) (string, error) {
	if err := f.R.Call(name, key); err != nil {
		return "", err
	}
	f.mu.Lock()
	_, ok := f.keys[key]
	f.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("snapshot %s not prepared: %w", key, errdefs.ErrNotFound)
	}
	target := f.RootfsTarget(key)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", err
	}
	f.set(key, "mounted")
	return target, nil
}

func (f *Snapshots) PrepareRootfs(key string, chainIDs []digest.Digest) (snapshot.Mount, error) {
	if err := f.R.Call("Snapshots.PrepareRootfs", key); err != nil {
		return snapshot.Mount{}, err
	}
	f.set(key, "prepared")
	return snapshot.Mount{Type: "overlay", Source: "overlay", Target: f.RootfsTarget(key)}, nil
}

func (f *Snapshots) MountRootfs(key string) (string, error) {
	return f.mount("Snapshots.MountRootfs", key)
}

func (f *Snapshots) MountRootfsMapped(key string, m userns.Mappings) (string, error) {
	return f.mount("Snapshots.MountRootfsMapped", key)
}

func (f *Snapshots) RootfsTarget(key string) string { return filepath.Join(f.Root, key, "merged") }
func (f *Snapshots) RootfsUpper(key string) string  { return filepath.Join(f.Root, key, "upper") }

// RemoveRootfs removes key and its read-only snapshots, as the real one.
func (f *Snapshots) RemoveRootfs(key string) error {
	if err := f.R.Call("Snapshots.RemoveRootfs", key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.keys {
		if k == key || strings.HasPrefix(k, key+"-vol") {
			delete(f.keys, k)
		}
	}
	return os.RemoveAll(filepath.Join(f.Root, key))
}

func (f *Snapshots) PrepareReadOnly(key string, chainIDs []digest.Digest) error {
	if err := f.R.Call("Snapshots.PrepareReadOnly", key); err != nil {
		return err
	}
	f.set(key, "prepared")
	return nil
}

func (f *Snapshots) MountReadOnly(key string) (string, error) {
	return f.mount("Snapshots.MountReadOnly", key)
}

func (f *Snapshots) LayerDiff(chainID digest.Digest) (string, error) {
	if err := f.R.Call("Snapshots.LayerDiff", chainID); err != nil {
		return "", err
	}
	return "", fmt.Errorf("layer %s: %w", chainID, errdefs.ErrNotFound)
}
