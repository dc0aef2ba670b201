package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestReferrers(t *testing.T) {
	const bundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	subject := digest.FromString("subject")
	var asked string
	reg := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !strings.Contains(req.URL.Path, "/referrers/") {
				h.ServeHTTP(w, req)
				return
			}
			if !strings.HasSuffix(req.URL.Path, "/test/img/referrers/"+subject.String()) {
				http.NotFound(w, req)
				return
			}
			asked = req.URL.Query().Get("artifactType")
			// A registry that does not filter, and reads artifact types
			// from configs only for one of them.
			json.NewEncoder(w).Encode(ocispec.Index{Manifests: []ocispec.Descriptor{
				{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("a"), ArtifactType: bundle},
				{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("b"), ArtifactType: "application/spdx+json"},
				{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("c"), ArtifactType: ocispec.MediaTypeEmptyJSON},
			}})
		})
	})
	r := newResolver(t, Options{})
	ctx := context.Background()
	got, err := r.Referrers(ctx, mustParse(t, reg.host+"/test/img"), subject, bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	if asked != bundle {
		t.Errorf("artifactType asked %q, want %q", asked, bundle)
	}
	if len(got) != 2 || got[0].Digest != digest.FromString("a") || got[1].Digest != digest.FromString("c") {
		t.Errorf("referrers %+v, want the bundle and the one of unknown type", got)
	}
	// A registry without the API (or without this subject): NotFound, so
	// the caller tries the referrers tag schema.
	if _, err := r.Referrers(ctx, mustParse(t, reg.host+"/test/other"), subject, bundle, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no referrers API: %v, want ErrNotFound", err)
	}
}
