package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/mediatype"
	"github.com/berth-cri/berth/internal/image/reference"
	"github.com/berth-cri/berth/internal/imagepolicy"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/registry"
)

// maxIndexDepth bounds indexes nested in indexes.
const maxIndexDepth = 4

// Pull makes the image ref names present and returns its record. ref is a
// reference (normalised as kubelet does) or the id of an image already
// present. handler is the CRI runtime handler the image is pulled for.
//
// Concurrent pulls of the same reference with the same credentials share
// one pull; a caller whose ctx ends stops waiting but does not cancel work
// another caller still waits for. Errors name the image; an unreachable
// registry's error keeps its leading "RegistryUnavailable" (kubelet shows
// that reason only then).
func (s *Service) Pull(ctx context.Context, ref string, auth *registry.Auth, handler string) (Image, error) {
	return s.PullFor(ctx, ref, auth, handler, "")
}

// PullFor is Pull for a pod of Kubernetes namespace ns, whose section of
// the image policy applies too ("" for none: berthd's own pulls).
func (s *Service) PullFor(ctx context.Context, ref string, auth *registry.Auth, handler, ns string) (Image, error) {
	if id, ok := reference.IsImageID(ref); ok {
		img, err := s.Get(id.String())
		if err != nil {
			return Image{}, fmt.Errorf("pull image %q: an image id can only name an image already present: %w", ref, err)
		}
		return img, nil
	}
	r, err := reference.Parse(ref)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	// The namespace is part of the key: its policy may refuse what
	// another namespace's accepts.
	key := r.String() + "\x00" + handler + "\x00" + authKey(auth) + "\x00" + ns
	img, _, err := s.pulls.Do(ctx, key, func(ctx context.Context) (*Image, error) {
		// Timed here, once per shared pull, not once per waiting caller.
		start := time.Now()
		img, err := s.pull(ctx, r, auth, handler, ns)
		s.metrics.ImagePulled(time.Since(start), err)
		return img, err
	})
	if err != nil {
		if errors.Is(err, registry.ErrRegistryUnavailable) {
			return Image{}, fmt.Errorf("%w (pulling image %q)", err, ref)
		}
		var denial *imagepolicy.Denial
		if errors.As(err, &denial) {
			return Image{}, err // it names the image, first
		}
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view(img), nil
}

// authKey tells credentials apart without keeping them: two pulls share
// work only when they would present the same credentials.
func authKey(a *registry.Auth) string {
	if a == nil {
		return ""
	}
	h := sha256.New()
	for _, f := range []string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken, a.ServerAddress} {
		fmt.Fprintf(h, "%d:%s", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// blob is a small blob fetched during a pull, stored once the pull knows
// which image it belongs to.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

// pull does the work of one Pull; ctx is the shared pull's.
func (s *Service) pull(ctx context.Context, ref reference.Ref, auth *registry.Auth, handler, ns string) (*Image, error) {
	// Manifests and the config are small: the whole metadata phase gets the
	// progress timeout as a deadline.
	timeout := s.timeoutOr(time.Hour)
	mctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("resolve %s: no answer within %s (image_pull_progress_timeout)", ref, timeout))
	top, data, err := s.resolver.Resolve(mctx, ref, auth)
	if err != nil {
		cancel()
		return nil, withCause(mctx, err)
	}
	small := []blob{{top, data}}
	manifestDesc, manifest, err := s.selectManifest(mctx, ref, auth, top, data, &small)
	if err != nil {
		cancel()
		return nil, withCause(mctx, err)
	}
	// Signatures are checked on the verified manifests before anything of
	// the image is stored or unpacked.
	if err := s.checkPolicy(mctx, ref, auth, ns, small, manifestDesc); err != nil {
		cancel()
		return nil, withCause(mctx, err)
	}
	if manifest.Config.Digest.Algorithm() != digest.SHA256 {
		cancel()
		return nil, fmt.Errorf("manifest %s: config digest %q is not sha256: %w", manifestDesc.Digest, manifest.Config.Digest, errdefs.ErrInvalidArgument)
	}
	configData, err := s.fetchConfig(mctx, ref, auth, manifest.Config)
	cancel()
	if err != nil {
		return nil, withCause(mctx, err)
	}
	small = append(small, blob{manifest.Config, configData})
	var cfg ocispec.Image
	if err := json.Unmarshal(configData, &cfg); err != nil {
		return nil, fmt.Errorf("image config %s: %v: %w", manifest.Config.Digest, err, errdefs.ErrInvalidArgument)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("image config %s (media type %q): rootfs %q has %d diff ids for %d layers in the manifest: %w",
			manifest.Config.Digest, manifest.Config.MediaType, cfg.RootFS.Type, len(cfg.RootFS.DiffIDs), len(manifest.Layers), errdefs.ErrInvalidArgument)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("image config %s: diff id %q: %v: %w", manifest.Config.Digest, d, err, errdefs.ErrInvalidArgument)
		}
	}
	chains := chainIDs(cfg.RootFS.DiffIDs)

	var blobDigests []digest.Digest
	for _, b := range small {
		blobDigests = append(blobDigests, b.desc.Digest)
	}
	release := s.lease(chains, blobDigests)
	defer release()
	err = s.storeAndUnpack(ctx, ref, auth, small, manifest.Layers, cfg.RootFS.DiffIDs, chains)
	if err != nil {
		// Free what this pull stored and nothing else needs, verified layers
		// included: a failed pull leaves nothing behind (a retry fetches
		// them again; orphans would otherwise wait for a restart).
		release()
		s.mu.Lock()
		victims := s.unreferenced(chains, blobDigests)
		s.mu.Unlock()
		if cerr := s.collect(victims); cerr != nil {
			logctx.G(ctx, s.log).WithError(cerr).Warn("free data of a failed pull")
		}
		return nil, err
	}

	size := manifest.Config.Size
	for _, l := range manifest.Layers {
		size += l.Size
	}
	uid, username := userFromConfig(cfg.Config.User)
	img := &Image{
		ID:             manifest.Config.Digest,
		Size:           size,
		UID:            uid,
		Username:       username,
		Spec:           cfg,
		DiffIDs:        cfg.RootFS.DiffIDs,
		ChainIDs:       chains,
		Blobs:          blobDigests,
		Annotations:    manifest.Annotations,
		RuntimeHandler: handler,
		PulledAt:       time.Now().UTC(),
	}
	// A pull by digest adds no tag; a tag next to a digest is ignored too,
	// since the digest, not the tag, is what was pulled.
	if ref.Digest() == "" {
		img.RepoTags = []string{ref.String()}
	}
	rd, err := ref.WithDigest(top.Digest)
	if err != nil {
		return nil, err
	}
	img.RepoDigests = []string{rd.String()}

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	p := s.ix.planPut(img)
	s.mu.Unlock()
	if err := s.ix.persist(p.ops()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ix.applyPut(p), nil
}

// storeAndUnpack writes the small blobs and unpacks the layers.
func (s *Service) storeAndUnpack(ctx context.Context, ref reference.Ref, auth *registry.Auth, small []blob, layers []ocispec.Descriptor, diffIDs, chains []digest.Digest) error {
	for _, b := range small {
		if err := s.content.WriteBlob(b.desc, b.data); err != nil {
			return err
		}
	}
	return s.unpackLayers(ctx, ref, auth, layers, diffIDs, chains)
}

// timeoutOr is the progress timeout, or def when it is disabled.
func (s *Service) timeoutOr(def time.Duration) time.Duration {
	if t := time.Duration(s.timeout.Load()); t > 0 {
		return t
	}
	return def
}

// withCause replaces a bare context error by the context's cause (the
// progress timeout's message says what happened).
func withCause(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if c := context.Cause(ctx); c != nil && c != ctx.Err() {
			return fmt.Errorf("%w (%v)", c, err)
		}
	}
	return err
}

// manifestKind is the media type of a manifest document: the descriptor's,
// else the document's own mediaType field, else a guess from its shape.
func manifestKind(desc ocispec.Descriptor, data []byte) string {
	if desc.MediaType != "" {
		return desc.MediaType
	}
	declared, shaped, err := mediatype.Sniff(data)
	switch {
	case err != nil:
		return ""
	case declared != "":
		return declared
	}
	return shaped
}

// selectManifest follows indexes down to the manifest for s.platform,
// appending every document it fetches to small.
func (s *Service) selectManifest(ctx context.Context, ref reference.Ref, auth *registry.Auth, desc ocispec.Descriptor, data []byte, small *[]blob) (ocispec.Descriptor, ocispec.Manifest, error) {
	for depth := 0; ; depth++ {
		kind := manifestKind(desc, data)
		switch mediatype.KindOf(kind) {
		case mediatype.Manifest:
			m, err := decodeManifest(desc, data)
			return desc, m, err
		case mediatype.Index:
			if depth >= maxIndexDepth {
				return desc, ocispec.Manifest{}, fmt.Errorf("index %s: nested more than %d deep: %w", desc.Digest, maxIndexDepth, errdefs.ErrInvalidArgument)
			}
			idx, err := decodeIndex(desc, data)
			if err != nil {
				return desc, ocispec.Manifest{}, err
			}
			child, ok := s.pickPlatform(idx.Manifests)
			if !ok {
				return desc, ocispec.Manifest{}, fmt.Errorf("no matching manifest for %s in index %s: %w", platforms.Format(s.platform), desc.Digest, errdefs.ErrNotFound)
			}
			if child.MediaType == "" {
				child.MediaType = ocispec.MediaTypeImageManifest
			}
			data, err = s.resolver.FetchManifest(ctx, ref, child, auth)
			if err != nil {
				return desc, ocispec.Manifest{}, err
			}
			desc = child
			*small = append(*small, blob{desc, data})
		case mediatype.Schema1:
			return desc, ocispec.Manifest{}, fmt.Errorf("manifest %s: Docker schema 1 images are not supported (deprecated; push the image again with a current client): %w", desc.Digest, errdefs.ErrInvalidArgument)
		default:
			return desc, ocispec.Manifest{}, fmt.Errorf("manifest %s: unsupported media type %q: %w", desc.Digest, kind, errdefs.ErrInvalidArgument)
		}
	}
}

// pickPlatform chooses the best entry of an index for s.platform (the
// matcher also accepts compatible platforms, e.g. an older arm variant, and
// orders them). Entries without a platform are skipped: the spec makes it
// optional, but an index is only useful here if it says which is which.
func (s *Service) pickPlatform(entries []ocispec.Descriptor) (ocispec.Descriptor, bool) {
	var best *ocispec.Descriptor
	for i := range entries {
		e := &entries[i]
		if e.Platform == nil || !s.matcher.Match(platforms.Normalize(*e.Platform)) {
			continue
		}
		if best == nil || s.matcher.Less(platforms.Normalize(*e.Platform), platforms.Normalize(*best.Platform)) {
			best = e
		}
	}
	if best == nil {
		return ocispec.Descriptor{}, false
	}
	return *best, true
}

// fetchConfig reads the config from the content store when present (a
// re-pull moves no bytes for it), else from the registry.
func (s *Service) fetchConfig(ctx context.Context, ref reference.Ref, auth *registry.Auth, desc ocispec.Descriptor) ([]byte, error) {
	if data, err := s.content.ReadBlob(desc.Digest); err == nil {
		return data, nil
	}
	return s.resolver.FetchManifest(ctx, ref, desc, auth)
}
