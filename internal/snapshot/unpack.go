package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/fault"
)

// Unpack extracts the uncompressed layer tar read from r as the snapshot
// chainID. The snapshot becomes visible (an atomic rename) only if the tar
// applies, r then reads to EOF without error, and commit returns nil; the
// caller verifies its digests in commit. An existing snapshot returns nil
// without reading r.
//
// Concurrent calls for one chainID share the first caller's extraction: the
// others wait for its result and their own r and commit are not used. A
// caller whose ctx ends returns ctx.Err() at once, and the extraction goes
// on for the remaining waiters, still reading the first caller's r and
// calling its commit, possibly after that caller returned. It is cancelled
// when no waiter is left; a later call waits for it to return. r is read in
// the extraction's goroutine; to stop a blocked read the caller must make r
// fail (e.g. a request bound to ctx).
func (s *Store) Unpack(ctx context.Context, chainID digest.Digest, r io.Reader, commit func() error) error {
	if err := validChainID(chainID); err != nil {
		return err
	}
	if s.Exists(chainID) {
		return nil
	}
	_, _, err := s.flights.Do(ctx, chainID.String(), func(ctx context.Context) (struct{}, error) {
		if s.Exists(chainID) { // a call finished between the check and this one
			return struct{}{}, nil
		}
		return struct{}{}, s.unpack(ctx, chainID, r, commit)
	})
	return err
}

func (s *Store) unpack(ctx context.Context, chainID digest.Digest, r io.Reader, commit func() error) error {
	tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-")
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	diff := filepath.Join(tmp, "diff")
	if err := os.Mkdir(diff, 0o755); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	stats, err := archive.Apply(ctx, diff, r, archive.Options{})
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	fault.Point("snapshot.mid-unpack")
	// The tar reader stops at the end-of-archive blocks; the caller's
	// digests cover every byte, padding included.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("unpack layer %s: read: %w", chainID, err)
	}
	if err := commit(); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	u := Usage{Bytes: stats.Bytes, Inodes: stats.Inodes}
	if err := atomicfile.WriteJSON(filepath.Join(tmp, usageFile), u, 0o644); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	// A layer that exists is never fetched again, so after a power cut it
	// must not be a directory of empty files: its files are flushed behind
	// (syncbehind.go), or before the rename where the boot has no id.
	token := ""
	if s.syncer.boot == "" {
		if err := syncfs(tmp); err != nil {
			return fmt.Errorf("unpack layer %s: %w", chainID, err)
		}
	} else if token, err = s.markUnsynced(tmp); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := os.Rename(tmp, s.layerDir(chainID)); err != nil {
		if s.Exists(chainID) {
			return nil // a cancelled twin finished first; same content
		}
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := atomicfile.SyncDir(s.layersDir()); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if token != "" {
		s.syncLater(chainID, token)
	}
	s.mu.Lock()
	s.usage[chainID] = u
	s.mu.Unlock()
	return nil
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
