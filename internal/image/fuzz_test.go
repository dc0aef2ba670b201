package image

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/mediatype"
	"github.com/berth-cri/berth/internal/image/reference"
	"github.com/berth-cri/berth/internal/registry"
)

// echoResolver answers every manifest fetch with the same document, as a
// registry that ignored digests would (the real client verifies them): an
// index then refers to itself forever, and only the depth bound ends it.
type echoResolver struct {
	data    []byte
	fetches int
}

func (r *echoResolver) Resolve(context.Context, reference.Ref, *registry.Auth) (ocispec.Descriptor, []byte, error) {
	return ocispec.Descriptor{}, nil, errors.New("not used")
}

func (r *echoResolver) FetchManifest(ctx context.Context, ref reference.Ref, desc ocispec.Descriptor, auth *registry.Auth) ([]byte, error) {
	r.fetches++
	return r.data, nil
}

func (r *echoResolver) FetchBlob(context.Context, reference.Ref, ocispec.Descriptor, *registry.Auth) (io.ReadCloser, error) {
	return nil, errors.New("not used")
}

func (r *echoResolver) Referrers(context.Context, reference.Ref, digest.Digest, string, *registry.Auth) ([]ocispec.Descriptor, error) {
	return nil, errors.New("not used")
}

func (r *echoResolver) Reload(registry.Options) error { return nil }

// FuzzManifest feeds arbitrary documents, declared with arbitrary media
// types, to the manifest and index parsing and platform selection of a
// pull: no panic, no endless recursion, and either a manifest whose config
// and layers a pull can safely fetch or an error of a known kind. Seeds are
// in testdata/fuzz/FuzzManifest.
func FuzzManifest(f *testing.F) {
	ref, err := reference.Parse("example.com/fuzz:v1")
	if err != nil {
		f.Fatal(err)
	}
	plat := platforms.Normalize(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	f.Fuzz(func(t *testing.T, data []byte, mediaType string) {
		res := &echoResolver{data: data}
		s := &Service{resolver: res, platform: plat, matcher: platforms.Only(plat)}
		top := ocispec.Descriptor{MediaType: mediaType, Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000", Size: int64(len(data))}
		var small []blob
		_, m, err := s.selectManifest(context.Background(), ref, nil, top, data, &small)
		if res.fetches > maxIndexDepth {
			t.Fatalf("%d fetches: the depth bound of %d did not hold", res.fetches, maxIndexDepth)
		}
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if m.Config.Digest.Validate() != nil || m.Config.Size < 0 || len(m.Layers) > maxLayers {
			t.Fatalf("accepted a manifest a pull cannot use: %+v", m)
		}
		for _, l := range m.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 || mediatype.KindOf(l.MediaType) != mediatype.Layer {
				t.Fatalf("accepted layer %+v", l)
			}
		}
	})
}
