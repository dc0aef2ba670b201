package reference

import (
	"errors"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// FuzzParse checks that Parse never panics, that every error is an
// InvalidArgument, and that the canonical form of any accepted reference
// parses back to itself with the same parts. Seeds live in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("busybox")
	f.Add("127.0.0.1:5000/a/b:c@sha256:" + hexA)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q): error %v is not InvalidArgument", s, err)
			}
			return
		}
		if r.Tag() == "" && r.Digest() == "" {
			t.Fatalf("Parse(%q) has neither tag nor digest", s)
		}
		again, err := Parse(r.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %q does not reparse: %v", s, r.String(), err)
		}
		if again != r && (again.String() != r.String() || again.Name() != r.Name()) {
			t.Fatalf("Parse(%q) = %q, reparsed as %q", s, r.String(), again.String())
		}
		if r.Domain()+"/"+r.Path() != r.Name() {
			t.Fatalf("Parse(%q): domain %q + path %q != name %q", s, r.Domain(), r.Path(), r.Name())
		}
		if _, ok := IsImageID(s); ok {
			t.Fatalf("Parse accepted image ID %q", s)
		}
	})
}
