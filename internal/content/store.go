// Package content is berthd's content-addressed blob store: every blob lives
// at blobs/<algorithm>/<hex> under the store root and is only ever made
// visible by a rename after its digest (and size, when known) was verified
// and the data fsynced. A partial download is never visible; leftovers of a
// crash sit in ingest/ and are removed at Open.
package content

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Store is a content store rooted at one directory. It is safe for
// concurrent use: writers never share a file, and visibility is a rename.
type Store struct {
	root string
}

// Info describes one stored blob.
type Info struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
}

// Usage is the disk used by the store's blobs.
type Usage struct {
	Bytes  int64
	Inodes int64
}

// Open opens (creating if needed) the store under root and removes every
// leftover ingest file: nothing can be writing to them before Open returns.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	for _, d := range []string{s.blobsDir(), s.ingestDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open content store %s: %w", root, err)
		}
	}
	if err := os.RemoveAll(s.ingestDir()); err != nil {
		return nil, fmt.Errorf("open content store %s: clean ingest: %w", root, err)
	}
	if err := os.Mkdir(s.ingestDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open content store %s: %w", root, err)
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobsDir() string  { return filepath.Join(s.root, "blobs") }
func (s *Store) ingestDir() string { return filepath.Join(s.root, "ingest") }

// path is where a verified blob with digest d lives.
func (s *Store) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob %q: %v: %w", d, err, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.blobsDir(), string(d.Algorithm()), d.Encoded()), nil
}

// Open opens the blob d for reading (an *os.File is also an io.ReaderAt).
// The caller closes it.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// ReadBlob returns the whole blob d. Meant for small blobs (manifests,
// configs). The data was verified when it was written and is verified again
// (cheap at these sizes): a file damaged since (a disk error, a hand edit)
// wraps ErrDigestMismatch instead of passing for the image's config.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, damaged(d, got)
	}
	return b, nil
}

// Verify re-reads blob d and checks it against its digest. It wraps
// errdefs.ErrNotFound for an absent blob and ErrDigestMismatch for a
// damaged one (truncated or altered after it was written).
func (s *Store) Verify(d digest.Digest) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	dg := d.Algorithm().Digester()
	if _, err := io.Copy(dg.Hash(), f); err != nil {
		return fmt.Errorf("verify blob %s: %w", d, err)
	}
	if got := dg.Digest(); got != d {
		return damaged(d, got)
	}
	return nil
}

func damaged(d, got digest.Digest) error {
	return fmt.Errorf("blob %s is damaged: its content has digest %s: %w", d, got, ErrDigestMismatch)
}

// Info describes blob d, or wraps errdefs.ErrNotFound.
func (s *Store) Info(d digest.Digest) (Info, error) {
	p, err := s.path(d)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return Info{}, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return Info{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Exists reports whether blob d is stored.
func (s *Store) Exists(d digest.Digest) bool {
	_, err := s.Info(d)
	return err == nil
}

// Delete removes blob d. Deleting an absent blob is not an error, so
// garbage collection can be retried after a crash.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob; an error from fn stops the walk and
// is returned. Files that are not valid blob names are skipped.
func (s *Store) Walk(fn func(Info) error) error {
	algs, err := os.ReadDir(s.blobsDir())
	if err != nil {
		return fmt.Errorf("walk content store: %w", err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.blobsDir(), a.Name()))
		if err != nil {
			return fmt.Errorf("walk content store: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), e.Name())
			if d.Validate() != nil || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted while we walked
				}
				return fmt.Errorf("walk content store: %w", err)
			}
			if err := fn(Info{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Usage sums the disk blocks and inodes of the stored blobs (in-flight
// ingests excluded).
func (s *Store) Usage() (Usage, error) {
	var u Usage
	err := filepath.WalkDir(s.blobsDir(), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		u.Inodes++
		u.Bytes += st.Blocks * 512
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("content store usage: %w", err)
	}
	return u, nil
}
