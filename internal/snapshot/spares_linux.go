package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Spare rootfs directories. A rootfs is a directory holding upper, work and
// merged and its lowers.json: five inodes, and an inode costs ~0.2 ms on
// this fleet's ext4 (a rename or a write ~0.02 ms), ~1 ms on the path of
// every container create. With KeepSpares the store keeps a few such
// skeletons ready in its tmp dir, made in the background after one is
// taken; PrepareRootfs fills one in and renames it into place. Spares are
// crash leftovers like any other tmp entry: Open removes them.
type spares struct {
	mu      sync.Mutex
	target  int
	ready   []string
	filling bool
	// recycling counts removals turning into spares (see recycle).
	recycling int
	// filled is closed and replaced whenever a fill ends (tests wait on it).
	filled chan struct{}
}

// SpareDirPrefix starts the name of every rootfs skeleton in the store's
// tmp dir: spares are kept there on purpose, not left over.
const SpareDirPrefix = "spare-"

// KeepSpares makes the store keep n spare rootfs skeletons from now on (0,
// the default, keeps none), starting to make them at once.
func (s *Store) KeepSpares(n int) {
	s.spares.mu.Lock()
	s.spares.target = n
	s.spares.mu.Unlock()
	s.refill()
}

// refillDelay is how long a taken spare waits to be replaced: made at once,
// a skeleton's inodes would compete with the create that took the spare
// (its overlay mount makes inodes in the same filesystem), and creates come
// in bursts (a pod's containers).
var refillDelay = 50 * time.Millisecond

// takeSpare returns a ready skeleton, if there is one, and has it replaced.
func (s *Store) takeSpare() (string, bool) {
	s.spares.mu.Lock()
	n := len(s.spares.ready)
	if n == 0 {
		s.spares.mu.Unlock()
		return "", false
	}
	dir := s.spares.ready[n-1]
	s.spares.ready = s.spares.ready[:n-1]
	s.spares.mu.Unlock()
	time.AfterFunc(refillDelay, s.refill)
	return dir, true
}

// refill starts making skeletons up to the target, unless that runs
// already.
func (s *Store) refill() {
	sp := &s.spares
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.filling || len(sp.ready) >= sp.target {
		return
	}
	sp.filling = true
	if sp.filled == nil {
		sp.filled = make(chan struct{})
	}
	go func() {
		var err error
		for {
			sp.mu.Lock()
			// On an error, creates make their own; the next take retries.
			if err != nil || len(sp.ready) >= sp.target {
				sp.filling = false
				close(sp.filled)
				sp.filled = make(chan struct{})
				sp.mu.Unlock()
				return
			}
			sp.mu.Unlock()
			var dir string
			if dir, err = s.makeSkeleton(); err == nil {
				sp.mu.Lock()
				sp.ready = append(sp.ready, dir)
				sp.mu.Unlock()
			}
		}
	}()
}

// waitSpares waits for a fill under way to end (tests).
func (s *Store) waitSpares() {
	s.spares.mu.Lock()
	filling, done := s.spares.filling, s.spares.filled
	s.spares.mu.Unlock()
	if filling {
		<-done
	}
}

// recycle turns the unmounted rootfs key into a spare when spares are
// wanted: its directory, work and merged dirs and lowers.json are kept
// (inodes neither freed nor made again: on a filesystem without a journal,
// ext4 skips every inode freed in the last minute when it allocates one,
// so churn makes each new inode dearer), its upper dir is made anew (the
// container may have left ACLs or attributes on it) and work emptied. It
// reports false when the rootfs is to be removed instead. Unlike a
// removal, nothing is flushed: a rootfs a power cut brings back in view
// has no record and is swept as an orphan. s.rootfsMu is held.
func (s *Store) recycle(key string) (bool, error) {
	sp := &s.spares
	sp.mu.Lock()
	want := len(sp.ready)+sp.recycling < sp.target
	if want {
		sp.recycling++
	}
	sp.mu.Unlock()
	if !want {
		return false, nil
	}
	defer func() {
		sp.mu.Lock()
		sp.recycling--
		sp.mu.Unlock()
	}()
	dir := filepath.Join(s.tmpDir(), SpareDirPrefix+key)
	if err := os.Rename(s.keyDir(key), dir); err != nil {
		return false, nil // removed as usual (or absent)
	}
	// From here on the rootfs is gone from view; a failure only loses the
	// spare (removed here, or with the tmp dir at the next start).
	ok := os.RemoveAll(filepath.Join(dir, "upper")) == nil &&
		os.Mkdir(filepath.Join(dir, "upper"), 0o755) == nil &&
		os.RemoveAll(filepath.Join(dir, "empty")) == nil &&
		os.RemoveAll(filepath.Join(dir, linksDir)) == nil &&
		os.Chmod(dir, 0o700) == nil &&
		emptyDir(filepath.Join(dir, "work")) == nil &&
		emptyDir(filepath.Join(dir, "merged")) == nil
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 4 {
		ok = false // not the layout makeSkeleton makes
	}
	if !ok {
		if err := os.RemoveAll(dir); err != nil {
			return true, fmt.Errorf("remove rootfs %s: %w", key, err)
		}
		return true, nil
	}
	sp.mu.Lock()
	sp.ready = append(sp.ready, dir)
	sp.mu.Unlock()
	return true, nil
}

// emptyDir removes what dir holds, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// makeSkeleton makes a rootfs skeleton in the tmp dir: upper, work and
// merged, and an empty lowers.json that PrepareRootfs overwrites in place.
func (s *Store) makeSkeleton() (string, error) {
	dir, err := os.MkdirTemp(s.tmpDir(), SpareDirPrefix)
	if err != nil {
		return "", err
	}
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, lowersFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	f.Close()
	return dir, nil
}
