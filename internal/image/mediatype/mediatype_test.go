package mediatype

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		doc, declared, shaped string
		bad                   bool
	}{
		{doc: `{"schemaVersion":2,"mediaType":"` + DockerManifest + `","config":{}}`, declared: DockerManifest, shaped: ocispec.MediaTypeImageManifest},
		{doc: `{"schemaVersion":2,"manifests":[]}`, shaped: ocispec.MediaTypeImageIndex},
		{doc: `{"schemaVersion":2,"layers":[]}`, shaped: ocispec.MediaTypeImageManifest},
		{doc: `{"schemaVersion":1,"name":"x"}`, shaped: DockerSchema1},
		{doc: `{"fsLayers":[]}`, shaped: DockerSchema1},
		{doc: `{}`},
		{doc: `[1]`, bad: true},
	} {
		declared, shaped, err := Sniff([]byte(tc.doc))
		if (err != nil) != tc.bad || declared != tc.declared || shaped != tc.shaped {
			t.Errorf("Sniff(%s) = %q, %q, %v; want %q, %q, error %v", tc.doc, declared, shaped, err, tc.declared, tc.shaped, tc.bad)
		}
	}
}

func TestKinds(t *testing.T) {
	for mt, want := range map[string]Kind{
		ocispec.MediaTypeImageIndex:     Index,
		DockerManifestList:              Index,
		DockerManifest:                  Manifest,
		DockerSchema1Signed:             Schema1,
		DockerLayerGzip:                 Layer,
		ocispec.MediaTypeImageLayerZstd: Layer,
		ocispec.MediaTypeImageConfig:    Other,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Other,
		ocispec.MediaTypeImageLayerGzip + "+encrypted":              Other,
	} {
		if got := KindOf(mt); got != want {
			t.Errorf("KindOf(%q) = %v, want %v", mt, got, want)
		}
	}
	if !Schema1.FromManifestsEndpoint() || Layer.FromManifestsEndpoint() {
		t.Error("FromManifestsEndpoint: schema 1 comes from the manifests endpoint, a layer does not")
	}
}
