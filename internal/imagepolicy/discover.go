package imagepolicy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/registry"
)

// Where signers put signatures.
const (
	// MediaTypeBundle is the Sigstore bundle current cosign attaches to an
	// image as an OCI 1.1 referrer (artifact type and layer type).
	MediaTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// mediaTypeSimpleSigning is the layer type of the older cosign scheme:
	// a manifest tagged sha256-<hex>.sig whose layers are simple-signing
	// payloads, each with its signature in an annotation.
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	annotationSignature    = "dev.cosignproject.cosign/signature"
	annotationCertificate  = "dev.sigstore.cosign/certificate"
	annotationChain        = "dev.sigstore.cosign/chain"
	annotationRekorBundle  = "dev.sigstore.cosign/bundle"
)

// Bounds against a registry that lists endless signatures or huge blobs:
// the signatures of one image are a handful of small documents.
const (
	maxSignatures = 32
	maxReferrers  = 64 // manifests fetched to look for bundles
	maxSigBlob    = 1 << 20
)

// Source reads the signatures of one image from its repository, through
// the same hosts (mirrors) and credentials as the image.
type Source interface {
	// Referrers lists the manifests whose subject is d, answered by the
	// registry's referrers API (errdefs.ErrNotFound where it has none).
	Referrers(ctx context.Context, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
	// ResolveTag fetches the manifest tagged tag in the image's repository
	// (errdefs.ErrNotFound when there is no such tag).
	ResolveTag(ctx context.Context, tag string) (ocispec.Descriptor, []byte, error)
	// Fetch fetches a manifest or small blob, verified against desc.
	Fetch(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)
}

// Signature is one signature found for an image.
type Signature struct {
	// Where names where it was found, for messages.
	Where string
	// Entity is a Sigstore bundle (or, in tests, any signed entity), whose
	// signed content is the image manifest (message signature) or an
	// in-toto statement naming the manifest digest (DSSE).
	Entity verify.SignedEntity
	// Payload and Sig are a cosign simple-signing signature: Sig signs
	// Payload, which names the manifest digest. Cert is its certificate
	// (PEM) when signed keyless, Chain the intermediates, RekorBundle its
	// Rekor entry with the log's signed entry timestamp.
	Payload, Sig             []byte
	Cert, Chain, RekorBundle []byte
}

// Discovery is what Discover found: the signatures, and why places that
// could hold some did not answer (for the refusal's message).
type Discovery struct {
	Signatures []Signature
	Problems   []string
}

// Discover collects the signatures of the manifest d from src: Sigstore
// bundles attached as OCI referrers (the registry's referrers API, else the
// sha256-<hex> referrers tag of registries without it), then the cosign
// sha256-<hex>.sig tag. A registry that cannot be reached ends the search
// with that error (a retry may do better); any other failure is noted and
// the search goes on.
func Discover(ctx context.Context, src Source, d digest.Digest) (Discovery, error) {
	var out Discovery
	tagPrefix := string(d.Algorithm()) + "-" + d.Encoded()
	note := func(where string, err error) error {
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		if errors.Is(err, registry.ErrRegistryUnavailable) {
			return err
		}
		out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", where, err))
		return nil
	}

	descs, err := src.Referrers(ctx, d, MediaTypeBundle)
	if err != nil {
		if err := note("referrers of "+d.String(), err); err != nil {
			return out, err
		}
		// The referrers tag schema (OCI distribution 1.1) of registries
		// without the API: an index tagged sha256-<hex>.
		descs = nil
		if _, data, err := src.ResolveTag(ctx, tagPrefix); err != nil {
			if err := note("referrers tag "+tagPrefix, err); err != nil {
				return out, err
			}
		} else {
			var idx ocispec.Index
			if json.Unmarshal(data, &idx) == nil {
				descs = idx.Manifests
			}
		}
	}
	fetched := 0
	for _, desc := range descs {
		if len(out.Signatures) >= maxSignatures || fetched >= maxReferrers {
			break
		}
		if desc.ArtifactType != "" && desc.ArtifactType != MediaTypeBundle && desc.ArtifactType != ocispec.MediaTypeEmptyJSON {
			continue
		}
		fetched++
		where := "referrer " + desc.Digest.String()
		if desc.MediaType == "" {
			desc.MediaType = ocispec.MediaTypeImageManifest
		}
		data, err := src.Fetch(ctx, desc)
		if err != nil {
			if err := note(where, err); err != nil {
				return out, err
			}
			continue
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: not a manifest: %v", where, err))
			continue
		}
		if m.ArtifactType != MediaTypeBundle && m.Config.MediaType != MediaTypeBundle {
			continue
		}
		for _, l := range m.Layers {
			if l.MediaType != MediaTypeBundle {
				continue
			}
			if l.Size > maxSigBlob {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: bundle of %d bytes is too large", where, l.Size))
				continue
			}
			blob, err := src.Fetch(ctx, l)
			if err != nil {
				if err := note(where, err); err != nil {
					return out, err
				}
				continue
			}
			var b bundle.Bundle
			if err := b.UnmarshalJSON(blob); err != nil {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: not a Sigstore bundle: %v", where, err))
				continue
			}
			out.Signatures = append(out.Signatures, Signature{Where: where, Entity: &b})
		}
	}

	sigTag := tagPrefix + ".sig"
	_, data, err := src.ResolveTag(ctx, sigTag)
	if err != nil {
		return out, note("tag "+sigTag, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		out.Problems = append(out.Problems, fmt.Sprintf("tag %s: not a manifest: %v", sigTag, err))
		return out, nil
	}
	for i, l := range m.Layers {
		if len(out.Signatures) >= maxSignatures {
			break
		}
		where := fmt.Sprintf("tag %s layer %d", sigTag, i)
		if l.MediaType != mediaTypeSimpleSigning {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[annotationSignature])
		if err != nil || len(sig) == 0 {
			out.Problems = append(out.Problems, where+": no signature annotation")
			continue
		}
		if l.Size > maxSigBlob {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: payload of %d bytes is too large", where, l.Size))
			continue
		}
		payload, err := src.Fetch(ctx, l)
		if err != nil {
			if err := note(where, err); err != nil {
				return out, err
			}
			continue
		}
		out.Signatures = append(out.Signatures, Signature{Where: where, Payload: payload, Sig: sig,
			Cert: []byte(l.Annotations[annotationCertificate]), Chain: []byte(l.Annotations[annotationChain]),
			RekorBundle: []byte(l.Annotations[annotationRekorBundle])})
	}
	return out, nil
}

// simpleSigning is the part of a cosign simple-signing payload checked.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// checkPayload verifies that a simple-signing payload names manifest d.
func checkPayload(payload []byte, d digest.Digest) error {
	var p simpleSigning
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf("payload is not simple-signing JSON: %v", err)
	}
	if p.Critical.Type != "cosign container image signature" {
		return fmt.Errorf("payload type %q is not a cosign container image signature", p.Critical.Type)
	}
	if p.Critical.Image.DockerManifestDigest != d.String() {
		return fmt.Errorf("payload signs manifest %s, not %s", p.Critical.Image.DockerManifestDigest, d)
	}
	return nil
}
