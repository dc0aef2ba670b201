// Package reference parses image references the way kubelet and containerd
// normalise them (docker.io default domain, library/ for one-word names,
// :latest when neither tag nor digest is given), and recognises image IDs,
// which CRI treats as references too.
package reference

import (
	"fmt"

	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Ref is a normalised, fully qualified image reference. The zero Ref is not
// valid; get one from Parse or WithDigest.
//
// A Ref may carry both a tag and a digest (name:tag@sha256:…): both are kept
// so the tag can be recorded, but the digest is what gets fetched.
type Ref struct {
	named  distref.Named // name only, no tag or digest
	tag    string
	digest digest.Digest
}

// Parse normalises s into a Ref. A malformed reference, and an image ID
// (sha256:<hex> or bare 64-hex, which distribution would otherwise read as
// the tag or name "sha256"), is an error wrapping errdefs.ErrInvalidArgument;
// callers that accept IDs check IsImageID first.
func Parse(s string) (Ref, error) {
	if _, ok := IsImageID(s); ok {
		return Ref{}, fmt.Errorf("parse image reference %q: is an image ID, not a reference: %w", s, errdefs.ErrInvalidArgument)
	}
	named, err := distref.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("parse image reference %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	r := Ref{named: distref.TrimNamed(named)}
	if t, ok := named.(distref.Tagged); ok {
		r.tag = t.Tag()
	}
	if d, ok := named.(distref.Digested); ok {
		r.digest = d.Digest()
	}
	if r.tag == "" && r.digest == "" {
		r.tag = "latest"
	}
	return r, nil
}

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r.named == nil }

// Name is the fully qualified repository name, e.g. docker.io/library/busybox.
func (r Ref) Name() string {
	if r.named == nil {
		return ""
	}
	return r.named.Name()
}

// Domain is the registry part of the name, e.g. docker.io or 127.0.0.1:5000.
func (r Ref) Domain() string {
	if r.named == nil {
		return ""
	}
	return distref.Domain(r.named)
}

// Path is the repository path within the registry, e.g. library/busybox.
func (r Ref) Path() string {
	if r.named == nil {
		return ""
	}
	return distref.Path(r.named)
}

// Tag is the tag, "" for a reference by digest only.
func (r Ref) Tag() string { return r.tag }

// Digest is the digest, "" for a reference by tag only.
func (r Ref) Digest() digest.Digest { return r.digest }

// Object is what a registry is asked for: the digest when there is one,
// else the tag.
func (r Ref) Object() string {
	if r.digest != "" {
		return r.digest.String()
	}
	return r.tag
}

// String is the canonical form: docker.io/library/busybox:latest,
// name@sha256:…, or name:tag@sha256:….
func (r Ref) String() string {
	s := r.Name()
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest.String()
	}
	return s
}

// Familiar is the short form a user would type (busybox:latest,
// quay.io/foo/bar@sha256:…), for display only.
func (r Ref) Familiar() string {
	if r.named == nil {
		return ""
	}
	s := distref.FamiliarName(r.named)
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest.String()
	}
	return s
}

// WithDigest returns name@d (without the tag): the repo digest recorded for
// an image after a pull. d must be a valid digest.
func (r Ref) WithDigest(d digest.Digest) (Ref, error) {
	if r.named == nil {
		return Ref{}, fmt.Errorf("repo digest of an empty reference: %w", errdefs.ErrInvalidArgument)
	}
	if err := d.Validate(); err != nil {
		return Ref{}, fmt.Errorf("repo digest %s@%s: %v: %w", r.Name(), d, err, errdefs.ErrInvalidArgument)
	}
	return Ref{named: r.named, digest: d}, nil
}

// WithTag returns name:tag (without a digest).
func (r Ref) WithTag(tag string) (Ref, error) {
	if r.named == nil {
		return Ref{}, fmt.Errorf("tag an empty reference: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := distref.WithTag(r.named, tag); err != nil {
		return Ref{}, fmt.Errorf("tag %s:%s: %v: %w", r.Name(), tag, err, errdefs.ErrInvalidArgument)
	}
	return Ref{named: r.named, tag: tag}, nil
}
