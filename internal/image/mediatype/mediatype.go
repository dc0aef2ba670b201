// Package mediatype is the one table of the image media types berthd knows
// (what the registry client fetches as a manifest, what the image service
// follows, unpacks or refuses), and the guess at a manifest's type from its
// shape when nothing declares it.
package mediatype

import (
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types; the OCI ones are ocispec's.
const (
	DockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	DockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	DockerLayer         = "application/vnd.docker.image.rootfs.diff.tar"
	DockerLayerGzip     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Kind is what a media type is to berthd.
type Kind int

const (
	// Other is any type not below: a config, an artifact, a foreign layer.
	Other Kind = iota
	// Index lists manifests by platform (an OCI index, a Docker manifest list).
	Index
	// Manifest names an image's config and layers.
	Manifest
	// Schema1 is Docker's deprecated first manifest format, fetched from
	// the manifests endpoint only to be refused with a clear error.
	Schema1
	// Layer is a layer berthd unpacks.
	Layer
)

// kinds is the table. Layers: the compression is read from the bytes, so
// the type only has to say "a tar, maybe compressed". Foreign and
// non-distributable layers are left out (Other) and so refused rather than
// fetched from the URLs their descriptors carry: those are Windows base
// layers, and following URLs from a manifest would let an image make
// berthd fetch from any address. Encrypted layers are left out too: berthd
// has no keys.
var kinds = map[string]Kind{
	ocispec.MediaTypeImageIndex:     Index,
	DockerManifestList:              Index,
	ocispec.MediaTypeImageManifest:  Manifest,
	DockerManifest:                  Manifest,
	DockerSchema1:                   Schema1,
	DockerSchema1Signed:             Schema1,
	ocispec.MediaTypeImageLayer:     Layer,
	ocispec.MediaTypeImageLayerGzip: Layer,
	ocispec.MediaTypeImageLayerZstd: Layer,
	DockerLayer:                     Layer,
	DockerLayerGzip:                 Layer,
}

// KindOf is what mt is.
func KindOf(mt string) Kind { return kinds[mt] }

// FromManifestsEndpoint reports whether a document of type mt comes from a
// registry's manifests endpoint (rather than its blobs endpoint): an index,
// a manifest, or a Docker schema 1 manifest.
func (k Kind) FromManifestsEndpoint() bool { return k == Index || k == Manifest || k == Schema1 }

// Sniff reads a manifest document: declared is its own mediaType field,
// shaped the type its fields suggest ("" when they suggest none). An error
// means data is not a JSON object.
func Sniff(data []byte) (declared, shaped string, err error) {
	var doc struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		Layers        json.RawMessage   `json:"layers"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", "", err
	}
	switch {
	case doc.SchemaVersion == 1 || doc.FSLayers != nil:
		shaped = DockerSchema1
	case doc.Manifests != nil:
		shaped = ocispec.MediaTypeImageIndex
	case doc.Config != nil || doc.Layers != nil:
		shaped = ocispec.MediaTypeImageManifest
	}
	return doc.MediaType, shaped, nil
}
