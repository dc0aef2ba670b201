package content

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
)

// ErrDigestMismatch is wrapped when written data does not match the
// expected digest or size; nothing is left behind.
var ErrDigestMismatch = errors.New("content digest mismatch")

// Writer streams one blob into an ingest file. Commit verifies and publishes
// it; Close without Commit discards it. Always Close (it is a no-op after
// Commit), so a failed write (a full disk) leaves nothing behind.
//
// Concurrent writers of the same digest are fine: each has its own ingest
// file and the first Commit wins; later ones find the blob and discard
// their copy.
type Writer struct {
	s        *Store
	expected ocispec.Descriptor
	f        *os.File
	digester digest.Digester
	n        int64
	err      error // sticky write error
	done     bool
}

// Writer starts writing a blob expected to match desc.Digest and, when
// desc.Size > 0, desc.Size.
func (s *Store) Writer(desc ocispec.Descriptor) (*Writer, error) {
	if _, err := s.path(desc.Digest); err != nil {
		return nil, err
	}
	if !desc.Digest.Algorithm().Available() {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm: %w", desc.Digest, errdefs.ErrInvalidArgument)
	}
	f, err := os.CreateTemp(s.ingestDir(), desc.Digest.Encoded()+"-*")
	if err != nil {
		return nil, fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	return &Writer{s: s, expected: desc, f: f, digester: desc.Digest.Algorithm().Digester()}, nil
}

// Write implements io.Writer. Writing more than the expected size fails at
// once, so a misbehaving registry cannot fill the disk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("write blob %s: writer closed", w.expected.Digest)
	}
	if w.expected.Size > 0 && w.n+int64(len(p)) > w.expected.Size {
		w.err = fmt.Errorf("write blob %s: more than the expected %d bytes: %w", w.expected.Digest, w.expected.Size, ErrDigestMismatch)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.digester.Hash().Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write blob %s: %w", w.expected.Digest, err)
		return n, w.err
	}
	return n, nil
}

// Written is the number of bytes written so far.
func (w *Writer) Written() int64 { return w.n }

// Commit verifies size and digest, fsyncs and renames the blob into place.
// On any error the ingest file is removed.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("commit blob %s: writer closed", w.expected.Digest)
	}
	err := w.commit()
	if err != nil {
		w.Close()
	}
	return err
}

func (w *Writer) commit() error {
	d := w.expected.Digest
	if w.err != nil {
		return w.err
	}
	if w.expected.Size > 0 && w.n != w.expected.Size {
		return fmt.Errorf("commit blob %s: got %d bytes, want %d: %w", d, w.n, w.expected.Size, ErrDigestMismatch)
	}
	if got := w.digester.Digest(); got != d {
		return fmt.Errorf("commit blob %s: content has digest %s: %w", d, got, ErrDigestMismatch)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit blob %s: sync: %w", d, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	tmp := w.f.Name()
	w.done = true
	target, _ := w.s.path(d)
	// A blob already there (another writer published the same content
	// first) is replaced all the same: the rename is atomic, our copy is
	// verified, and the one there may be damaged (see WriteBlob).
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit blob %s: %w", d, err)
	}
	return atomicfile.SyncDir(dir)
}

// Close discards an uncommitted blob. It is safe to call more than once and
// after Commit.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("discard blob %s: %w", w.expected.Digest, err)
	}
	return nil
}

// WriteBlob stores data as the blob desc, verified. Storing a blob that is
// already present and intact does nothing; a damaged copy is replaced, so a
// re-pull repairs it.
func (s *Store) WriteBlob(desc ocispec.Descriptor, data []byte) error {
	if s.Verify(desc.Digest) == nil {
		return nil
	}
	w, err := s.Writer(desc)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit()
}
