package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
)

const hexA = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

func TestParse(t *testing.T) {
	tests := []struct {
		in                                 string
		name, domain, path, tag, dgst, str string
	}{
		{in: "busybox", name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", tag: "latest", str: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", tag: "1.36", str: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", tag: "latest", str: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", tag: "latest", str: "docker.io/library/busybox:latest"},
		{in: "index.docker.io/library/busybox", name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", tag: "latest", str: "docker.io/library/busybox:latest"},
		{in: "user/app:v1", name: "docker.io/user/app", domain: "docker.io", path: "user/app", tag: "v1", str: "docker.io/user/app:v1"},
		{in: "registry.k8s.io/pause:3.10", name: "registry.k8s.io/pause", domain: "registry.k8s.io", path: "pause", tag: "3.10", str: "registry.k8s.io/pause:3.10"},
		{in: "127.0.0.1:5000/e2e-test-images/busybox:1.29-2", name: "127.0.0.1:5000/e2e-test-images/busybox", domain: "127.0.0.1:5000", path: "e2e-test-images/busybox", tag: "1.29-2", str: "127.0.0.1:5000/e2e-test-images/busybox:1.29-2"},
		{in: "localhost/foo", name: "localhost/foo", domain: "localhost", path: "foo", tag: "latest", str: "localhost/foo:latest"},
		{in: "[::1]:5000/foo:t", name: "[::1]:5000/foo", domain: "[::1]:5000", path: "foo", tag: "t", str: "[::1]:5000/foo:t"},
		{in: "busybox@sha256:" + hexA, name: "docker.io/library/busybox", domain: "docker.io", path: "library/busybox", dgst: "sha256:" + hexA, str: "docker.io/library/busybox@sha256:" + hexA},
		{in: "quay.io/a/b:tag@sha256:" + hexA, name: "quay.io/a/b", domain: "quay.io", path: "a/b", tag: "tag", dgst: "sha256:" + hexA, str: "quay.io/a/b:tag@sha256:" + hexA},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := []string{r.Name(), r.Domain(), r.Path(), r.Tag(), string(r.Digest()), r.String()}
			want := []string{tt.name, tt.domain, tt.path, tt.tag, tt.dgst, tt.str}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("field %d = %q, want %q", i, got[i], want[i])
				}
			}
			// The canonical form is a fixed point.
			again, err := Parse(r.String())
			if err != nil || again.String() != r.String() {
				t.Errorf("reparse %q = %q, %v", r.String(), again.String(), err)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"Busybox",
		"busybox:",
		"busybox@sha256:abc",
		"busybox@sha256:" + strings.ToUpper(hexA),
		"-busybox",
		"a//b",
		"busybox:tag:tag",
		"http://docker.io/busybox",
		"sha256:" + hexA, // an ID, not a name
		hexA,             // a bare ID
		strings.Repeat("a", 300),
		"busy box",
	} {
		t.Run(in, func(t *testing.T) {
			r, err := Parse(in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", in, r)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v does not wrap ErrInvalidArgument", err)
			}
		})
	}
}

func TestFamiliar(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/busybox:latest": "busybox:latest",
		"docker.io/user/app:v1":            "user/app:v1",
		"quay.io/a/b@sha256:" + hexA:       "quay.io/a/b@sha256:" + hexA,
	} {
		r, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Familiar(); got != want {
			t.Errorf("Familiar(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWithDigestAndTag(t *testing.T) {
	r, err := Parse("busybox:1.36")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.WithDigest(digest.Digest("sha256:" + hexA))
	if err != nil {
		t.Fatal(err)
	}
	if want := "docker.io/library/busybox@sha256:" + hexA; rd.String() != want {
		t.Errorf("WithDigest = %q, want %q", rd, want)
	}
	if rd.Tag() != "" || rd.Object() != "sha256:"+hexA {
		t.Errorf("repo digest keeps tag %q / object %q", rd.Tag(), rd.Object())
	}
	if _, err := r.WithDigest("sha256:nothex"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("WithDigest(bad) = %v, want ErrInvalidArgument", err)
	}
	rt, err := rd.WithTag("2")
	if err != nil || rt.String() != "docker.io/library/busybox:2" {
		t.Errorf("WithTag = %q, %v", rt, err)
	}
	if _, err := r.WithTag("bad tag"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("WithTag(bad) = %v, want ErrInvalidArgument", err)
	}
	var zero Ref
	if !zero.IsZero() || zero.Name() != "" || zero.String() != "" {
		t.Errorf("zero Ref not empty: %q", zero)
	}
	if _, err := zero.WithDigest(rd.Digest()); err == nil {
		t.Error("WithDigest on zero Ref succeeded")
	}
}

func TestIsImageID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"sha256:" + hexA, "sha256:" + hexA, true},
		{hexA, "sha256:" + hexA, true},
		{strings.ToUpper(hexA), "", false},
		{"sha256:" + hexA[:63], "", false},
		{hexA[:63], "", false},
		{"sha512:" + hexA, "", false},
		{"busybox", "", false},
		{"busybox@sha256:" + hexA, "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		d, ok := IsImageID(tt.in)
		if ok != tt.ok || string(d) != tt.want {
			t.Errorf("IsImageID(%q) = %q, %v; want %q, %v", tt.in, d, ok, tt.want, tt.ok)
		}
	}
}
