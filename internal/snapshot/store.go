// Package snapshot keeps image layers as overlayfs lower directories keyed
// by chain ID, and container writable layers (upper/work/merged) on top.
//
// Layout under the root (callers pass <root_dir>/snapshots):
//
//	layers/<algo>-<hex>/diff        one layer's changes, in overlay form
//	layers/<algo>-<hex>/usage.json  its Usage, computed at unpack
//	layers/<algo>-<hex>/unsynced    until its files are flushed (syncbehind.go)
//	rootfs/<key>/{upper,work,merged,lowers.json}
//	tmp/                            extractions in progress, removals
//
// A layer directory appears only by an atomic rename from tmp/ after it is
// complete and verified, so a crash leaves either nothing or a whole layer;
// Open empties tmp/. Layers are independent of their parents (each is its
// own lower dir), so the layers of an image can be unpacked in parallel.
package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/flight"
)

// Usage is disk use: the apparent size of regular files (hard links counted
// once) and the number of inodes.
type Usage struct {
	Bytes  int64 `json:"bytes"`
	Inodes int64 `json:"inodes"`
}

// Store is safe for concurrent use. It assumes it is the only writer of its
// root, and does not track which rootfs uses which layer: the image service
// must not Remove a layer a prepared rootfs still names.
type Store struct {
	root string

	// flights shares an extraction between the concurrent Unpacks of a
	// chain ID (keyed by its string), cancelled once none waits any more.
	flights flight.Group[struct{}]

	// mu guards the fields below.
	mu    sync.Mutex
	usage map[digest.Digest]Usage

	// rootfsMu serialises the rootfs operations, so that two callers cannot
	// both see a rootfs unmounted and stack two mounts on it.
	rootfsMu sync.Mutex

	spares spares // see spares_linux.go

	syncer syncBehind // see syncbehind.go

	// lowerdirPlus reports whether the kernel's overlay takes lowerdir+
	// (see mount_linux.go), probed once; tests replace it to force the
	// mount(2) fallback of older kernels.
	lowerdirPlus func() bool
}

// Open prepares a store at root, creating its directories and removing what
// a crash left in tmp/.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	s := &Store{root: abs, usage: map[digest.Digest]Usage{}}
	s.syncer.boot = readBootID()
	s.syncer.idle = sync.NewCond(&s.syncer.mu)
	s.syncer.quiet, s.syncer.maxWait = flushQuiet, flushMaxWait
	s.syncer.wake = make(chan struct{}, 1)
	s.flights.CancelAbandoned = true
	s.lowerdirPlus = sync.OnceValue(func() bool { return ProbeLowerdirPlus(s.tmpDir()) })
	for _, d := range []string{abs, s.layersDir(), s.tmpDir(), s.rootfsDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
	}
	leftovers, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	for _, e := range leftovers {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("remove crash leftover: %w", err)
		}
	}
	if err := s.settleUnsynced(); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return s, nil
}

// Mountpoint is the store's root directory, the filesystem ImageFsInfo
// reports.
func (s *Store) Mountpoint() string { return s.root }

func (s *Store) layersDir() string { return filepath.Join(s.root, "layers") }
func (s *Store) tmpDir() string    { return filepath.Join(s.root, "tmp") }
func (s *Store) rootfsDir() string { return filepath.Join(s.root, "rootfs") }

// layerDir names a snapshot "<algo>-<hex>": a ':' would need escaping in
// overlay's legacy lowerdir option.
func (s *Store) layerDir(chainID digest.Digest) string {
	return filepath.Join(s.layersDir(), chainID.Algorithm().String()+"-"+chainID.Encoded())
}

func (s *Store) diffDir(chainID digest.Digest) string {
	return filepath.Join(s.layerDir(chainID), "diff")
}

func validChainID(chainID digest.Digest) error {
	if err := chainID.Validate(); err != nil {
		return fmt.Errorf("chain id %q: %w: %v", chainID, errdefs.ErrInvalidArgument, err)
	}
	return nil
}

// Exists reports whether the layer snapshot chainID is complete.
func (s *Store) Exists(chainID digest.Digest) bool {
	if validChainID(chainID) != nil {
		return false
	}
	fi, err := os.Stat(s.layerDir(chainID))
	return err == nil && fi.IsDir()
}

// LayerDiff is the directory holding the files of the complete layer
// snapshot chainID (that layer's own, in overlay form): read it, never
// write it, and only while the image holding the layer is in use.
func (s *Store) LayerDiff(chainID digest.Digest) (string, error) {
	if !s.Exists(chainID) {
		return "", fmt.Errorf("layer snapshot %s: %w", chainID, errdefs.ErrNotFound)
	}
	return s.diffDir(chainID), nil
}

// List returns the chain IDs of all layer snapshots.
func (s *Store) List() ([]digest.Digest, error) {
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var ids []digest.Digest
	for _, e := range entries {
		algo, hex, ok := strings.Cut(e.Name(), "-")
		if !ok || !e.IsDir() {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(algo), hex)
		if d.Validate() == nil {
			ids = append(ids, d)
		}
	}
	return ids, nil
}

// Remove deletes the layer snapshot chainID. Removing an absent snapshot
// succeeds, as the CRI's RemoveImage requires of idempotent removals. The
// directory is first renamed into tmp/, so it vanishes atomically and a crash
// during the slow part leaves only garbage Open clears.
func (s *Store) Remove(chainID digest.Digest) error {
	if err := validChainID(chainID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.usage, chainID)
	s.mu.Unlock()
	return s.removeDir(s.layerDir(chainID), s.layersDir())
}

// removeDir renames dir (in parent) into tmp/ and deletes it there.
func (s *Store) removeDir(dir, parent string) error {
	trash, err := os.MkdirTemp(s.tmpDir(), "rm-")
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := os.Rename(dir, filepath.Join(trash, "d")); err != nil {
		os.Remove(trash)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Usage sums the usage of all layer snapshots. Each snapshot's figure is
// computed once, at unpack, and kept in memory and in its usage.json.
func (s *Store) Usage() (Usage, error) {
	ids, err := s.List()
	if err != nil {
		return Usage{}, err
	}
	var total Usage
	for _, id := range ids {
		u, err := s.layerUsage(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return Usage{}, err
		}
		total.Bytes += u.Bytes
		total.Inodes += u.Inodes
	}
	return total, nil
}

func (s *Store) layerUsage(id digest.Digest) (Usage, error) {
	s.mu.Lock()
	u, ok := s.usage[id]
	s.mu.Unlock()
	if ok {
		return u, nil
	}
	u, err := readUsage(filepath.Join(s.layerDir(id), usageFile))
	if err != nil {
		// Lost or damaged: measure again, and keep the answer.
		if u, err = diskUsage(s.diffDir(id)); err != nil {
			return Usage{}, err
		}
		if err := atomicfile.WriteJSON(filepath.Join(s.layerDir(id), usageFile), u, 0o644); err != nil {
			return Usage{}, err
		}
	}
	s.mu.Lock()
	s.usage[id] = u
	s.mu.Unlock()
	return u, nil
}
