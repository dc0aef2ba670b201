package image

import (
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/reference"
	"github.com/berth-cri/berth/internal/imagepolicy"
	"github.com/berth-cri/berth/internal/registry"
)

// PolicyChecker enforces the image policy; *imagepolicy.Enforcer
// implements it.
type PolicyChecker interface {
	Check(ctx context.Context, t imagepolicy.Target, namespace string, src imagepolicy.Source) error
}

var _ PolicyChecker = (*imagepolicy.Enforcer)(nil)

// policySource reads an image's signatures from its repository through
// the resolver: the same hosts.toml mirrors and credentials as the image.
type policySource struct {
	resolver Resolver
	ref      reference.Ref
	auth     *registry.Auth
}

func (p policySource) Referrers(ctx context.Context, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	return p.resolver.Referrers(ctx, p.ref, d, artifactType, p.auth)
}

func (p policySource) ResolveTag(ctx context.Context, tag string) (ocispec.Descriptor, []byte, error) {
	r, err := p.ref.WithTag(tag)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return p.resolver.Resolve(ctx, r, p.auth)
}

func (p policySource) Fetch(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	return p.resolver.FetchManifest(ctx, p.ref, desc, p.auth)
}

// checkPolicy enforces the policy on a pull, after the manifests are
// fetched and verified and before anything is stored or unpacked. The
// signature is looked for on the digest the reference resolved to (an
// index for a multi-platform image) and, failing that, on the platform's
// manifest (cosign sign --recursive signs both).
func (s *Service) checkPolicy(ctx context.Context, ref reference.Ref, auth *registry.Auth, ns string, small []blob, chosen ocispec.Descriptor) error {
	if s.policy == nil {
		return nil
	}
	top := small[0]
	t := imagepolicy.Target{Image: ref.String(), Name: ref.Name(), Digest: top.desc.Digest, Manifest: top.data}
	if chosen.Digest != top.desc.Digest {
		t.Platform = func() (imagepolicy.Target, bool) {
			for _, b := range small {
				if b.desc.Digest == chosen.Digest {
					return imagepolicy.Target{Image: ref.String(), Name: ref.Name(), Digest: b.desc.Digest, Manifest: b.data}, true
				}
			}
			return imagepolicy.Target{}, false
		}
	}
	return s.policy.Check(ctx, t, ns, policySource{resolver: s.resolver, ref: ref, auth: auth})
}

// CheckPolicy enforces the image policy on an image already present, for a
// container of namespace ns: a verdict of the policy in force makes it a
// map lookup; otherwise (the policy changed since, or the image was pulled
// before it or for another namespace) the signatures are read again with
// the node's credentials. The image is allowed when one of its repository
// digests passes.
func (s *Service) CheckPolicy(ctx context.Context, img Image, ns string) error {
	if s.policy == nil {
		return nil
	}
	if len(img.RepoDigests) == 0 {
		return s.policy.Check(ctx, imagepolicy.Target{Image: img.ID.String(), Digest: img.ID, Manifest: []byte{}}, ns, noSource{})
	}
	var first error
	for _, rd := range img.RepoDigests {
		ref, err := reference.Parse(rd)
		if err != nil {
			return err
		}
		d := ref.Digest()
		t := imagepolicy.Target{Image: rd, Name: ref.Name(), Digest: d,
			ReadManifest: func() ([]byte, error) { return s.content.ReadBlob(d) },
			Platform:     func() (imagepolicy.Target, bool) { return s.platformTarget(img, rd, ref.Name(), d) }}
		err = s.policy.Check(ctx, t, ns, policySource{resolver: s.resolver, ref: ref})
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// platformTarget finds, among the blobs of img, the platform manifest an
// index top led to: the manifest whose config is the image's.
func (s *Service) platformTarget(img Image, image, name string, top digest.Digest) (imagepolicy.Target, bool) {
	for _, d := range img.Blobs {
		if d == top || d == img.ID {
			continue
		}
		data, err := s.content.ReadBlob(d)
		if err != nil {
			continue
		}
		var m struct {
			Config struct {
				Digest digest.Digest `json:"digest"`
			} `json:"config"`
		}
		if json.Unmarshal(data, &m) == nil && m.Config.Digest == img.ID {
			return imagepolicy.Target{Image: image, Name: name, Digest: d, Manifest: data}, true
		}
	}
	return imagepolicy.Target{}, false
}

// noSource is the source of an image without a repository: it has no
// signatures to find.
type noSource struct{}

func (noSource) Referrers(context.Context, digest.Digest, string) ([]ocispec.Descriptor, error) {
	return nil, errdefs.ErrNotFound
}

func (noSource) ResolveTag(context.Context, string) (ocispec.Descriptor, []byte, error) {
	return ocispec.Descriptor{}, nil, errdefs.ErrNotFound
}

func (noSource) Fetch(context.Context, ocispec.Descriptor) ([]byte, error) {
	return nil, errdefs.ErrNotFound
}
