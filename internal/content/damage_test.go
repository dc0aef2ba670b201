package content

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// A blob damaged after it was written (truncated, altered) is reported by
// Verify and ReadBlob rather than served, and WriteBlob repairs it
// (regression: ReadBlob trusted the file and WriteBlob kept a damaged copy,
// so a re-pull could never fix an image whose config was truncated).
func TestDamagedBlob(t *testing.T) {
	data := bytes.Repeat([]byte(`{"config":{}}`), 100)
	desc := descOf(data)
	for _, tc := range []struct {
		name   string
		damage func(p string) error
		want   error
	}{
		{"truncated", func(p string) error { return os.Truncate(p, 10) }, ErrDigestMismatch},
		{"empty", func(p string) error { return os.Truncate(p, 0) }, ErrDigestMismatch},
		{"altered", func(p string) error {
			b := bytes.Clone(data)
			b[5] ^= 0xff
			return os.WriteFile(p, b, 0o444)
		}, ErrDigestMismatch},
		{"missing", os.Remove, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteBlob(desc, data); err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(desc.Digest); err != nil {
				t.Fatalf("Verify of an intact blob: %v", err)
			}
			p, _ := s.path(desc.Digest)
			if err := tc.damage(p); err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(desc.Digest); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
			if _, err := s.ReadBlob(desc.Digest); !errors.Is(err, tc.want) {
				t.Errorf("ReadBlob = %v, want %v", err, tc.want)
			}
			if err := s.WriteBlob(desc, data); err != nil {
				t.Fatalf("WriteBlob over the damaged copy: %v", err)
			}
			if got, err := s.ReadBlob(desc.Digest); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after repair: %v", err)
			}
			if es := ingestEntries(t, s); len(es) != 0 {
				t.Fatalf("ingest leftovers: %v", es)
			}
		})
	}
}
