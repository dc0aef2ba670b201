package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Mount says how to mount a container's root filesystem; see PrepareRootfs.
type Mount struct {
	Type    string
	Source  string
	Target  string
	Options []string
}

const lowersFile = "lowers.json"

// validKey accepts container ids and similar names: they become one path
// component, and a leading '.' is kept for nothing of ours to clash with.
func validKey(key string) error {
	ok := key != "" && len(key) <= 128 && key[0] != '.'
	for _, c := range key {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}
	if !ok {
		return fmt.Errorf("rootfs key %q: %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) keyDir(key string) string { return filepath.Join(s.rootfsDir(), key) }

// PrepareRootfs creates <root>/rootfs/<key>/{upper,work,merged} for the
// chain chainIDs (lowest layer first, image order) and returns the overlay
// mount of it, without mounting. Every layer must exist. The directory
// appears atomically; a second Prepare of key is ErrAlreadyExists.
func (s *Store) PrepareRootfs(key string, chainIDs []digest.Digest) (Mount, error) {
	if err := validKey(key); err != nil {
		return Mount{}, err
	}
	for _, id := range chainIDs {
		if err := validChainID(id); err != nil {
			return Mount{}, err
		}
		if !s.Exists(id) {
			return Mount{}, fmt.Errorf("prepare rootfs %s: layer %s: %w", key, id, errdefs.ErrNotFound)
		}
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	dir := s.keyDir(key)
	if _, err := os.Lstat(dir); err == nil {
		return Mount{}, fmt.Errorf("prepare rootfs %s: %w", key, errdefs.ErrAlreadyExists)
	}
	tmp, ok := s.takeSpare()
	if !ok {
		var err error
		if tmp, err = s.makeSkeleton(); err != nil {
			return Mount{}, fmt.Errorf("prepare rootfs %s: %w", key, err)
		}
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := s.populateRootfs(tmp, chainIDs); err != nil {
		return Mount{}, fmt.Errorf("prepare rootfs %s: %w", key, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Mount{}, fmt.Errorf("prepare rootfs %s: %w", key, err)
	}
	// Flushed behind (see atomicfile.FlushBehind): the rename is what
	// a crash of berthd sees; a rootfs a power cut loses or leaves without
	// its lowers.json belongs to a container that did not survive the cut
	// either, and is removed with it or swept as an orphan. ~0.6 ms of
	// fsyncs per create.
	atomicfile.SyncBehind(filepath.Join(dir, lowersFile), dir)
	atomicfile.SyncBehind("", s.rootfsDir())
	return s.mountFor(key, chainIDs), nil
}

// populateRootfs makes the skeleton dir (see makeSkeleton) the rootfs of
// chainIDs.
func (s *Store) populateRootfs(dir string, chainIDs []digest.Digest) error {
	if len(chainIDs) == 0 {
		// Overlay needs a lower dir: an image without layers gets an empty one.
		if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
			return err
		}
	} else {
		// The container's "/" takes its owner and mode from the upper dir
		// root, so give it the top layer's root (ownership of the image's
		// "/" matters to images that run as non-root).
		var st unix.Stat_t
		if err := unix.Stat(s.diffDir(chainIDs[len(chainIDs)-1]), &st); err != nil {
			return err
		}
		upper := filepath.Join(dir, "upper")
		if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
			return err
		}
	}
	if chainIDs == nil {
		chainIDs = []digest.Digest{}
	}
	data, err := json.Marshal(chainIDs)
	if err != nil {
		return err
	}
	// Written in place (the skeleton's empty file): dir is renamed into
	// view only once complete (and flushed by PrepareRootfs).
	return os.WriteFile(filepath.Join(dir, lowersFile), data, 0o644)
}

// RootfsUpper is key's overlay upper dir: the container's writable layer.
func (s *Store) RootfsUpper(key string) string { return filepath.Join(s.keyDir(key), "upper") }

// RootfsTarget is where MountRootfs mounts key's overlay.
func (s *Store) RootfsTarget(key string) string { return filepath.Join(s.keyDir(key), "merged") }

// mountFor builds the overlay mount of key.
func (s *Store) mountFor(key string, chainIDs []digest.Digest) Mount {
	dir := s.keyDir(key)
	return Mount{
		Type:    "overlay",
		Source:  "overlay",
		Target:  s.RootfsTarget(key),
		Options: overlayOptions(s.lowerDirs(key, chainIDs), filepath.Join(dir, "upper"), filepath.Join(dir, "work")),
	}
}

// lowerDirs are the overlay lower dirs of key: its layers top-most first
// (overlay's order, the reverse of the image's), or its empty dir for an
// image without layers.
func (s *Store) lowerDirs(key string, chainIDs []digest.Digest) []string {
	if len(chainIDs) == 0 {
		return []string{filepath.Join(s.keyDir(key), "empty")}
	}
	var lowers []string
	for _, id := range slices.Backward(chainIDs) {
		lowers = append(lowers, s.diffDir(id))
	}
	return lowers
}

// toMount is how MountRootfs and MountRootfsMapped begin, holding
// rootfsMu: key's mount and lower dirs, or mounted when there is nothing to
// do. Every layer must still exist.
func (s *Store) toMount(key string) (m Mount, lowers []string, mounted bool, err error) {
	ids, err := s.readLowers(key)
	if err != nil {
		return Mount{}, nil, false, err
	}
	m = s.mountFor(key, ids)
	if mounted, err := isMounted(m.Target); err != nil || mounted {
		return m, nil, mounted, err
	}
	for _, id := range ids {
		if validChainID(id) != nil || !s.Exists(id) {
			return Mount{}, nil, false, fmt.Errorf("mount rootfs %s: layer %s: %w", key, id, errdefs.ErrFailedPrecondition)
		}
	}
	return m, s.lowerDirs(key, ids), false, nil
}

func (s *Store) readLowers(key string) ([]digest.Digest, error) {
	return readLowersFile(filepath.Join(s.keyDir(key), lowersFile), "rootfs "+key)
}

// readLowersFile reads the chain IDs file of a rootfs or read-only
// snapshot; what names it in errors.
func readLowersFile(file, what string) ([]digest.Digest, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var ids []digest.Digest
	if err := json.Unmarshal(data, &ids); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", what, lowersFile, err)
	}
	return ids, nil
}

// MountRootfs mounts the overlay of key on its merged dir and returns that
// path. A mounted rootfs is left as it is.
func (s *Store) MountRootfs(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	m, lowers, mounted, err := s.toMount(key)
	if err != nil || mounted {
		return m.Target, err
	}
	dir := s.keyDir(key)
	o := overlay{lowers: lowers, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work")}
	if err := mountOverlay(o, m.Target, dir, s.lowerdirPlus()); err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	return m.Target, nil
}

// UnmountRootfs unmounts key's overlay. Unmounting an unmounted or absent
// rootfs succeeds.
func (s *Store) UnmountRootfs(key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	return s.unmount(key)
}

func (s *Store) unmount(key string) error {
	return unmountAll(filepath.Join(s.keyDir(key), "merged"), "rootfs "+key)
}

// unmountAll unmounts every mount stacked on target; what names it in
// errors. An absent or unmounted target succeeds.
func unmountAll(target, what string) error {
	for range 8 { // mounts may be stacked
		mounted, err := isMounted(target)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !mounted {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", what, err)
		}
		err = unix.Unmount(target, 0)
		if errors.Is(err, unix.EBUSY) {
			// Something still holds it (a process cwd, a leaked fd).
			// Detach: the container is gone and removal must proceed;
			// the kernel frees the mount when the last user lets go.
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", what, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted: %w", what, errdefs.ErrFailedPrecondition)
}

// RemoveRootfs unmounts key if needed and deletes its directories, and
// key's read-only snapshots (VolumeKey(key, n)) before them, so a crash
// half-way leaves the rootfs for the orphan sweep to find.
// Removing an absent rootfs succeeds (CRI RemoveContainer is idempotent).
func (s *Store) RemoveRootfs(key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	if err := s.removeVolumesOf(key); err != nil {
		return err
	}
	// unmount only returns nil once merged is no mount point, so the
	// recursive delete below cannot reach into the layers.
	if err := s.unmount(key); err != nil {
		return err
	}
	if recycled, err := s.recycle(key); recycled || err != nil {
		return err
	}
	return s.removeDir(s.keyDir(key), s.rootfsDir())
}

// RootfsUsage measures key's upper dir: what the container wrote.
func (s *Store) RootfsUsage(key string) (Usage, error) {
	if err := validKey(key); err != nil {
		return Usage{}, err
	}
	upper := filepath.Join(s.keyDir(key), "upper")
	if _, err := os.Lstat(upper); errors.Is(err, fs.ErrNotExist) {
		return Usage{}, fmt.Errorf("rootfs %s: %w", key, errdefs.ErrNotFound)
	}
	return diskUsage(upper)
}

// ListRootfs returns the keys of all prepared rootfs.
func (s *Store) ListRootfs() ([]string, error) {
	entries, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		return nil, fmt.Errorf("list rootfs: %w", err)
	}
	var keys []string
	for _, e := range entries {
		if e.IsDir() && validKey(e.Name()) == nil {
			keys = append(keys, e.Name())
		}
	}
	return keys, nil
}

// isMounted reports whether dir is a mount point: its mount id differs from
// its parent's. (statx's mount id sees bind mounts of the same filesystem,
// which a device number comparison would miss.)
func isMounted(dir string) (bool, error) {
	var st, parent unix.Statx_t
	for _, q := range []struct {
		path string
		st   *unix.Statx_t
	}{{dir, &st}, {filepath.Dir(dir), &parent}} {
		if err := unix.Statx(unix.AT_FDCWD, q.path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, q.st); err != nil {
			return false, &os.PathError{Op: "statx", Path: q.path, Err: err}
		}
	}
	if st.Mask&parent.Mask&unix.STATX_MNT_ID == 0 {
		return st.Dev_major != parent.Dev_major || st.Dev_minor != parent.Dev_minor, nil
	}
	return st.Mnt_id != parent.Mnt_id, nil
}
