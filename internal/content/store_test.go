package content

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

func descOf(b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func ingestEntries(t *testing.T, s *Store) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(s.ingestDir())
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestWriteReadDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello blob")
	desc := descOf(data)
	if s.Exists(desc.Digest) {
		t.Fatal("blob exists before write")
	}
	if err := s.WriteBlob(desc, data); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadBlob(desc.Digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	info, err := s.Info(desc.Digest)
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	var walked []digest.Digest
	if err := s.Walk(func(i Info) error { walked = append(walked, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walked) != 1 || walked[0] != desc.Digest {
		t.Fatalf("Walk = %v", walked)
	}
	if u, err := s.Usage(); err != nil || u.Bytes == 0 || u.Inodes == 0 {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := s.Delete(desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ReadBlob(desc.Digest); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("ReadBlob after delete: %v", err)
	}
}

func TestVerifyFailureLeavesNothing(t *testing.T) {
	data := []byte("the real content")
	for _, tc := range []struct {
		name  string
		desc  ocispec.Descriptor
		write []byte
	}{
		{"wrong digest", ocispec.Descriptor{Digest: digest.FromString("other"), Size: int64(len(data))}, data},
		{"short", descOf(data), data[:4]},
		{"too long", descOf(data), append(append([]byte{}, data...), 'x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			w, err := s.Writer(tc.desc)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := w.Write(tc.write)
			cerr := w.Commit()
			w.Close()
			if werr == nil && cerr == nil {
				t.Fatal("bad content committed")
			}
			if err := errors.Join(werr, cerr); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("error %v does not wrap ErrDigestMismatch", err)
			}
			if s.Exists(tc.desc.Digest) {
				t.Fatal("blob visible after failed verify")
			}
			if es := ingestEntries(t, s); len(es) != 0 {
				t.Fatalf("ingest leftovers: %v", es)
			}
		})
	}
}

func TestOpenRemovesCrashLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("partial download")
	w, err := s.Writer(descOf(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:5]); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: the writer is never closed.
	if es := ingestEntries(t, s); len(es) != 1 {
		t.Fatalf("want one ingest file, got %v", es)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if es := ingestEntries(t, s2); len(es) != 0 {
		t.Fatalf("ingest leftovers after Open: %v", es)
	}
	if s2.Exists(descOf(data).Digest) {
		t.Fatal("partial blob visible")
	}
}

func TestConcurrentWritersOfOneDigest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 256<<10)
	rand.Read(data)
	desc := descOf(data)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.Writer(desc)
			if err != nil {
				errs <- err
				return
			}
			defer w.Close()
			for off := 0; off < len(data); off += 4096 {
				if _, err := w.Write(data[off : off+4096]); err != nil {
					errs <- err
					return
				}
			}
			errs <- w.Commit()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadBlob(desc.Digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadBlob: %v", err)
	}
	if es := ingestEntries(t, s); len(es) != 0 {
		t.Fatalf("ingest leftovers: %v", es)
	}
}

// A full disk fails the write and leaves neither a blob nor an ingest file.
func TestDiskFullLeavesNothing(t *testing.T) {
	root := t.TempDir()
	err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64k")
	testsupport.Require(t, err == nil, "cannot mount a small tmpfs: %v", err)
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	s, err := Open(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	err = s.WriteBlob(descOf(data), data)
	if err == nil {
		t.Fatal("write of 1 MiB into 64 KiB succeeded")
	}
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("error %v is not ENOSPC", err)
	}
	if s.Exists(descOf(data).Digest) {
		t.Fatal("blob visible after ENOSPC")
	}
	if es := ingestEntries(t, s); len(es) != 0 {
		t.Fatalf("ingest leftovers: %v", es)
	}
}

func TestInvalidDigest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{"", "sha256:../../etc", "md5:abc"} {
		if _, err := s.Writer(ocispec.Descriptor{Digest: d}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Writer(%q) = %v, want invalid argument", d, err)
		}
		if _, err := s.Open(d); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, want invalid argument", d, err)
		}
	}
}
