package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// layer builds an in-memory tar: "name" is a regular file (content after
// '='), names ending in '/' are directories.
func layer(t testing.TB, entries ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		name, body, _ := strings.Cut(e, "=")
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func chain(name string) digest.Digest { return digest.FromString(name) }

func noCommit() error { return nil }

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustUnpack(t *testing.T, s *Store, id digest.Digest, data []byte) {
	t.Helper()
	if err := s.Unpack(context.Background(), id, bytes.NewReader(data), noCommit); err != nil {
		t.Fatalf("unpack %s: %v", id, err)
	}
}

// cleanupRootfs removes key at the end of the test, before TempDir tries to
// delete a mounted tree.
func cleanupRootfs(t *testing.T, s *Store, key string) {
	t.Cleanup(func() {
		if err := s.RemoveRootfs(key); err != nil {
			t.Errorf("cleanup rootfs %s: %v", key, err)
		}
	})
}

// gatedReader counts reads and blocks the first one until release is closed.
type gatedReader struct {
	r       io.Reader
	release chan struct{}
	reads   chan struct{} // receives once per Read, never blocks
	n       int
}

func newGated(data []byte) *gatedReader {
	return &gatedReader{r: bytes.NewReader(data), release: make(chan struct{}), reads: make(chan struct{}, 1<<16)}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.reads <- struct{}{}
	<-g.release
	return g.r.Read(p)
}
