package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Read-only snapshots back image volumes (CRI Mount.image): an overlay of an
// image's layer snapshots with no upper dir, so nothing can write to it and
// the layers stay shared with every container and volume of that image.
//
// Layout: volumes/<key>/{merged,empty/{0,1},lowers.json}. Keys are
// VolumeKey(owner, n), owner a container id, and RemoveRootfs(owner) removes
// them with the owner's rootfs: every path that cleans a container (remove,
// the rollback of a failed create, the start-up sweep of orphans) cleans its
// volumes too. They live outside rootfs/ so that ListRootfs, whose callers
// remove every key no container owns, never lists them as orphans.

// VolumeKey is the key of owner's read-only snapshot number n.
func VolumeKey(owner string, n int) string { return fmt.Sprintf("%s-vol%d", owner, n) }

func (s *Store) volumesDir() string          { return filepath.Join(s.root, "volumes") }
func (s *Store) volumeDir(key string) string { return filepath.Join(s.volumesDir(), key) }

// PrepareReadOnly creates the read-only snapshot key of the chain chainIDs
// (lowest layer first, image order), without mounting it. Every layer must
// exist. A second Prepare of key is ErrAlreadyExists.
func (s *Store) PrepareReadOnly(key string, chainIDs []digest.Digest) error {
	if err := validKey(key); err != nil {
		return err
	}
	for _, id := range chainIDs {
		if err := validChainID(id); err != nil {
			return err
		}
		if !s.Exists(id) {
			return fmt.Errorf("prepare read-only snapshot %s: layer %s: %w", key, id, errdefs.ErrNotFound)
		}
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	if err := os.MkdirAll(s.volumesDir(), 0o711); err != nil {
		return fmt.Errorf("prepare read-only snapshot %s: %w", key, err)
	}
	dir := s.volumeDir(key)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("prepare read-only snapshot %s: %w", key, errdefs.ErrAlreadyExists)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "ro-")
	if err != nil {
		return fmt.Errorf("prepare read-only snapshot %s: %w", key, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, d := range []string{"merged", "empty", "empty/0", "empty/1"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return fmt.Errorf("prepare read-only snapshot %s: %w", key, err)
		}
	}
	if chainIDs == nil {
		chainIDs = []digest.Digest{}
	}
	if err := atomicfile.WriteJSON(filepath.Join(tmp, lowersFile), chainIDs, 0o644); err != nil {
		return fmt.Errorf("prepare read-only snapshot %s: %w", key, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("prepare read-only snapshot %s: %w", key, err)
	}
	return atomicfile.SyncDir(s.volumesDir())
}

// MountReadOnly mounts key's overlay, read-only, on its merged dir and
// returns that path. A mounted snapshot is left as it is.
func (s *Store) MountReadOnly(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	dir := s.volumeDir(key)
	ids, err := readLowersFile(filepath.Join(dir, lowersFile), "read-only snapshot "+key)
	if err != nil {
		return "", err
	}
	target := filepath.Join(dir, "merged")
	if mounted, err := isMounted(target); err != nil || mounted {
		return target, err
	}
	var lowers []string
	for _, id := range slices.Backward(ids) {
		if validChainID(id) != nil || !s.Exists(id) {
			return "", fmt.Errorf("mount read-only snapshot %s: layer %s: %w", key, id, errdefs.ErrFailedPrecondition)
		}
		lowers = append(lowers, s.diffDir(id))
	}
	// Without an upper dir overlay wants two lower dirs at least: empty ones
	// at the bottom change nothing and make images of one layer (or none)
	// work. (Siblings: overlay refuses a lower dir below another.)
	for i := 0; len(lowers) < 2; i++ {
		lowers = append(lowers, filepath.Join(dir, "empty", strconv.Itoa(i)))
	}
	if err := mountOverlay(overlay{lowers: lowers}, target, dir, s.lowerdirPlus()); err != nil {
		return "", fmt.Errorf("mount read-only snapshot %s: %w", key, err)
	}
	return target, nil
}

// RemoveReadOnly unmounts key if needed and deletes it. Removing an absent
// snapshot succeeds.
func (s *Store) RemoveReadOnly(key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	return s.removeReadOnly(key)
}

// removeReadOnly: s.rootfsMu is held.
func (s *Store) removeReadOnly(key string) error {
	dir := s.volumeDir(key)
	if err := unmountAll(filepath.Join(dir, "merged"), "read-only snapshot "+key); err != nil {
		return err
	}
	return s.removeDir(dir, s.volumesDir())
}

// ListReadOnly returns the keys of owner's read-only snapshots.
func (s *Store) ListReadOnly(owner string) ([]string, error) {
	if err := validKey(owner); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.volumesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list read-only snapshots: %w", err)
	}
	own := regexp.MustCompile(`^` + regexp.QuoteMeta(owner) + `-vol[0-9]+$`)
	var keys []string
	for _, e := range entries {
		if e.IsDir() && own.MatchString(e.Name()) {
			keys = append(keys, e.Name())
		}
	}
	return keys, nil
}

// removeVolumesOf removes every read-only snapshot of owner; s.rootfsMu is
// held.
func (s *Store) removeVolumesOf(owner string) error {
	keys, err := s.ListReadOnly(owner)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.removeReadOnly(k); err != nil {
			return err
		}
	}
	return nil
}
