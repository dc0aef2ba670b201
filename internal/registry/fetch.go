package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/mediatype"
	"github.com/berth-cri/berth/internal/image/reference"
)

// Size caps against hostile or broken registries: a manifest is a few KiB,
// an image config rarely more than a few hundred. CRI-O's image library caps
// both at 4 MiB too, so no image that runs elsewhere needs more; a bigger
// config (a 10 MB env list) could not start a container anyway (execve takes
// a few MiB of arguments and environment at most) and would be copied into
// every record and ImageStatus answer.
const (
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 4 << 20
)

// manifestAccept is sent on every manifest request, preferred types first.
var manifestAccept = []string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	mediatype.DockerManifestList,
	mediatype.DockerManifest,
}

// isManifestType reports whether mt is a manifest or index type this
// package fetches from the manifests endpoint.
func isManifestType(mt string) bool {
	k := mediatype.KindOf(mt)
	return k == mediatype.Index || k == mediatype.Manifest
}

// refInfo is what the fetch code needs of a reference.
type refInfo struct {
	name, domain, path string
}

func infoOf(ref reference.Ref) refInfo {
	return refInfo{name: ref.Name(), domain: ref.Domain(), path: ref.Path()}
}

// Resolve fetches the manifest or index that ref names (by digest when ref
// has one, else by tag) from the first of the registry's hosts that has it,
// in hosts.toml order. The returned bytes match the descriptor; for a ref
// with a digest they are verified against it.
func (r *Resolver) Resolve(ctx context.Context, ref reference.Ref, auth *Auth) (ocispec.Descriptor, []byte, error) {
	if ref.IsZero() {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve: empty reference: %w", errdefs.ErrInvalidArgument)
	}
	cfg, err := r.configForPull()
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	caps := CapPull
	if ref.Digest() == "" {
		caps |= CapResolve // a tag is only trusted from hosts allowed to resolve
	}
	all := cfg.hosts.Hosts(ref.Domain())
	what := "resolve " + ref.String()
	var desc ocispec.Descriptor
	var data []byte
	h, err := r.eachHost(ctx, cfg, all, filterHosts(all, caps), infoOf(ref), auth, what, func(c *http.Client, h Host) error {
		var err error
		desc, data, err = getManifest(ctx, c, h, ref.Path(), ref.Object(), ref.Digest(), 0)
		return err
	})
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	r.remember(ref.Name(), h)
	return desc, data, nil
}

// FetchManifest fetches the manifest, index, config or other small blob
// that desc names, from ref's repository, verifying digest and size.
func (r *Resolver) FetchManifest(ctx context.Context, ref reference.Ref, desc ocispec.Descriptor, auth *Auth) ([]byte, error) {
	if err := checkDescriptor(ref, desc); err != nil {
		return nil, err
	}
	limit := int64(MaxConfigSize)
	if isManifestType(desc.MediaType) {
		limit = MaxManifestSize
	}
	what := fmt.Sprintf("fetch %s of %s", desc.Digest, ref.Name())
	if desc.Size > limit {
		return nil, fmt.Errorf("%s: size %d exceeds the limit of %d bytes: %w", what, desc.Size, limit, errdefs.ErrResourceExhausted)
	}
	cfg := r.config()
	all := cfg.hosts.Hosts(ref.Domain())
	var data []byte
	_, err := r.eachHost(ctx, cfg, all, r.pullHosts(cfg, ref.Domain(), ref.Name()), infoOf(ref), auth, what, func(c *http.Client, h Host) error {
		if isManifestType(desc.MediaType) {
			var err error
			_, data, err = getManifest(ctx, c, h, ref.Path(), desc.Digest.String(), desc.Digest, desc.Size)
			return err
		}
		body, err := getBlob(ctx, c, h, ref.Path(), desc, false)
		if err != nil {
			return err
		}
		defer body.Close()
		data, err = readCapped(h, body, limit) // size checked by verify
		if err != nil {
			return err
		}
		return verify(h, data, desc.Digest, desc.Size)
	})
	return data, err
}

// FetchBlob opens the blob desc names (a layer) for streaming. The reader
// fails if the registry sends more than desc.Size bytes; the caller verifies
// the digest while streaming, and closes the reader.
func (r *Resolver) FetchBlob(ctx context.Context, ref reference.Ref, desc ocispec.Descriptor, auth *Auth) (io.ReadCloser, error) {
	if err := checkDescriptor(ref, desc); err != nil {
		return nil, err
	}
	cfg := r.config()
	all := cfg.hosts.Hosts(ref.Domain())
	what := fmt.Sprintf("fetch blob %s of %s", desc.Digest, ref.Name())
	var rc io.ReadCloser
	_, err := r.eachHost(ctx, cfg, all, r.pullHosts(cfg, ref.Domain(), ref.Name()), infoOf(ref), auth, what, func(c *http.Client, h Host) error {
		var err error
		rc, err = getBlob(ctx, c, h, ref.Path(), desc, true)
		return err
	})
	return rc, err
}

func checkDescriptor(ref reference.Ref, desc ocispec.Descriptor) error {
	if ref.IsZero() {
		return fmt.Errorf("fetch: empty reference: %w", errdefs.ErrInvalidArgument)
	}
	// The digest goes into a URL path: it must be exactly algorithm:hex.
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("fetch from %s: bad digest %q: %v: %w", ref.Name(), desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.Size < 0 {
		return fmt.Errorf("fetch %s from %s: negative size: %w", desc.Digest, ref.Name(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// eachHost runs op on each of hosts in turn, with each candidate credential,
// until one succeeds, and returns the host that did. all is the registry's
// full host list (its last entry is the server). A cancelled ctx stops at
// once; otherwise every failure is collected for the final error.
func (r *Resolver) eachHost(ctx context.Context, cfg *config, all, hosts []Host, ref refInfo, auth *Auth, what string, op func(*http.Client, Host) error) (Host, error) {
	var errs []*hostError
	server := all[len(all)-1].URL()
	tried := map[string]bool{}
	for _, h := range hosts {
		// A file may name one endpoint as a mirror and as the server (the
		// usual mirror-only setup): asking it twice cannot help.
		if tried[h.URL()] {
			continue
		}
		tried[h.URL()] = true
		creds := candidates(cfg, h, h.URL() == server, ref, auth)
		for _, cred := range creds {
			if err := ctx.Err(); err != nil {
				return Host{}, ctxErr(ctx, what, h.URL())
			}
			c, err := r.client(ctx, cfg, h, ref.path, cred)
			if err == nil {
				err = op(c, h)
			}
			if err == nil {
				return h, nil
			}
			if ctx.Err() != nil {
				return Host{}, ctxErr(ctx, what, h.URL())
			}
			he := classify(h.URL(), err)
			he.reason = scrub(he.reason, append(creds, auth))
			errs = append(errs, he)
			if !errors.Is(he.kind, errdefs.ErrUnauthenticated) {
				break // another credential cannot help with this host
			}
		}
	}
	return Host{}, combine(what, errs)
}

// getManifest GETs manifests/<object> from h and checks it against want
// (when set) and wantSize (when > 0).
func getManifest(ctx context.Context, c *http.Client, h Host, repo, object string, want digest.Digest, wantSize int64) (ocispec.Descriptor, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/"+repo+"/manifests/"+object, nil)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	for _, a := range manifestAccept {
		req.Header.Add("Accept", a)
	}
	resp, err := c.Do(req)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if resp.ContentLength > MaxManifestSize {
		return ocispec.Descriptor{}, nil, tooLarge(h, MaxManifestSize)
	}
	data, err := readCapped(h, resp.Body, MaxManifestSize)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	dgst := want
	if dgst == "" {
		dgst = digest.FromBytes(data)
	} else if err := verify(h, data, want, wantSize); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	mt, err := manifestType(h, resp.Header.Get("Content-Type"), data)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: int64(len(data))}, data, nil
}

// manifestType is the media type of a manifest: the mediaType field of the
// body (covered by the digest) when present, else the Content-Type header,
// else what the document's shape says.
func manifestType(h Host, contentType string, data []byte) (string, error) {
	declared, shaped, err := mediatype.Sniff(data)
	if err != nil {
		return "", &hostError{host: h.URL(), reason: "manifest is not JSON"}
	}
	mt := declared
	if mt == "" {
		if ct, _, err := mime.ParseMediaType(contentType); err == nil && mediatype.KindOf(ct).FromManifestsEndpoint() {
			mt = ct
		}
	}
	if mt == "" {
		mt = shaped
	}
	if !isManifestType(mt) {
		return "", &hostError{host: h.URL(), kind: errdefs.ErrUnimplemented,
			reason: fmt.Sprintf("unsupported manifest media type %q (Docker schema 1 images are not supported)", mt)}
	}
	return mt, nil
}

// getBlob GETs blobs/<digest> from h. Redirects (to blob storage) are
// followed without the registry's credentials. With limit, the body fails
// past desc.Size bytes, a size of 0 included: an endless body must end.
func getBlob(ctx context.Context, c *http.Client, h Host, repo string, desc ocispec.Descriptor, limit bool) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/"+repo+"/blobs/"+desc.Digest.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if desc.Size > 0 && resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
		resp.Body.Close()
		return nil, &hostError{host: h.URL(), kind: ErrDigestMismatch,
			reason: fmt.Sprintf("blob %s: registry sends %d bytes, descriptor says %d", desc.Digest, resp.ContentLength, desc.Size)}
	}
	if !limit {
		return resp.Body, nil
	}
	return &sizeLimitedBody{rc: resp.Body, left: desc.Size, host: h.URL(), dgst: desc.Digest}, nil
}

// sizeLimitedBody fails a stream that runs past the descriptor's size, so
// a hostile registry cannot fill the disk before the digest check.
type sizeLimitedBody struct {
	rc   io.ReadCloser
	left int64
	host string
	dgst digest.Digest
}

func (b *sizeLimitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Expect EOF now: probe with one byte.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("blob %s from %s: more bytes than the descriptor's size: %w", b.dgst, b.host, ErrDigestMismatch)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *sizeLimitedBody) Close() error { return b.rc.Close() }

// readCapped reads all of r, failing past limit bytes.
func readCapped(h Host, r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(h, limit)
	}
	return data, nil
}

func tooLarge(h Host, limit int64) error {
	return &hostError{host: h.URL(), kind: errdefs.ErrResourceExhausted, reason: fmt.Sprintf("response exceeds %d bytes", limit)}
}

// verify checks data against want and, when wantSize > 0, its size.
func verify(h Host, data []byte, want digest.Digest, wantSize int64) error {
	if got := want.Algorithm().FromBytes(data); got != want {
		return &hostError{host: h.URL(), kind: ErrDigestMismatch, reason: fmt.Sprintf("content has digest %s, want %s", got, want)}
	}
	if wantSize > 0 && int64(len(data)) != wantSize {
		return &hostError{host: h.URL(), kind: ErrDigestMismatch, reason: fmt.Sprintf("content has %d bytes, descriptor says %d", len(data), wantSize)}
	}
	return nil
}

// Referrers lists the manifests whose subject is d in ref's repository,
// filtered by artifactType when the registry filters (OCI distribution 1.1
// referrers API), asking the hosts that serve pulls. A registry without the
// API answers 404 (errdefs.ErrNotFound): the caller may then try the
// referrers tag schema.
func (r *Resolver) Referrers(ctx context.Context, ref reference.Ref, d digest.Digest, artifactType string, auth *Auth) ([]ocispec.Descriptor, error) {
	if err := checkDescriptor(ref, ocispec.Descriptor{Digest: d}); err != nil {
		return nil, err
	}
	cfg, err := r.configForPull()
	if err != nil {
		return nil, err
	}
	all := cfg.hosts.Hosts(ref.Domain())
	what := fmt.Sprintf("referrers of %s in %s", d, ref.Name())
	var idx ocispec.Index
	_, err = r.eachHost(ctx, cfg, all, r.pullHosts(cfg, ref.Domain(), ref.Name()), infoOf(ref), auth, what, func(c *http.Client, h Host) error {
		u := h.URL() + "/" + ref.Path() + "/referrers/" + d.String()
		if artifactType != "" {
			u += "?artifactType=" + url.QueryEscape(artifactType)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", ocispec.MediaTypeImageIndex)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return err
		}
		data, err := readCapped(h, resp.Body, MaxManifestSize)
		if err != nil {
			return err
		}
		idx = ocispec.Index{}
		if err := json.Unmarshal(data, &idx); err != nil {
			return &hostError{host: h.URL(), reason: "referrers answer is not an index"}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A registry that does not filter says so; filter here either way.
	// Some registries take the artifact type from the config's media type
	// only (an OCI 1.1 draft) and so report the empty config's type for
	// every artifact: those entries are kept for the caller to look at.
	var out []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if artifactType == "" || m.ArtifactType == artifactType || m.ArtifactType == ocispec.MediaTypeEmptyJSON {
			out = append(out, m)
		}
	}
	return out, nil
}
