package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/image/mediatype"
	"github.com/berth-cri/berth/internal/image/reference"
)

// recorder is a Transport that logs every request and refuses, without any
// dial or DNS lookup, every host that is not loopback: tests prove which
// hosts were contacted and that none outside the machine ever is.
type recorder struct {
	inner http.RoundTripper
	mu    sync.Mutex
	reqs  []string // host + path
}

func newRecorder() *recorder {
	return &recorder{inner: http.DefaultTransport.(*http.Transport).Clone()}
}

func (rc *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path)
	rc.mu.Unlock()
	if !isLoopback(req.URL.Host) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("test transport: no network")}
	}
	return rc.inner.RoundTrip(req)
}

func (rc *recorder) requests() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.reqs...)
}

// contacted reports whether any request went to host (host[:port]).
func (rc *recorder) contacted(host string) bool {
	for _, r := range rc.requests() {
		if strings.Contains(r, "://"+host+"/") {
			return true
		}
	}
	return false
}

// testRegistry is an in-process registry on 127.0.0.1 holding
//   - test/img:v1, a 2-layer image;
//   - test/multi:v1, an index of two images (linux/amd64, linux/arm64).
type testRegistry struct {
	srv   *httptest.Server
	host  string // 127.0.0.1:port
	img   v1.Image
	index v1.ImageIndex
}

// startRegistry serves the registry through wrap (nil: as is).
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	return startRegistryTLS(t, wrap, false)
}

// startRegistryTLS is startRegistry, serving HTTPS with a test certificate
// when useTLS is set.
func startRegistryTLS(t *testing.T, wrap func(http.Handler) http.Handler, useTLS bool) *testRegistry {
	t.Helper()
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	plain := httptest.NewServer(h) // to push without auth
	t.Cleanup(plain.Close)
	tr := &testRegistry{}
	if wrap != nil {
		h = wrap(h)
	}
	if useTLS {
		tr.srv = httptest.NewTLSServer(h)
	} else {
		tr.srv = httptest.NewServer(h)
	}
	t.Cleanup(tr.srv.Close)
	tr.host = tr.srv.Listener.Addr().String()
	// Both servers share the handler's storage: push to the plain one.
	pushHost := strings.TrimPrefix(plain.URL, "http://")

	var err error
	if tr.img, err = random.Image(512, 2); err != nil {
		t.Fatal(err)
	}
	push(t, pushHost+"/test/img:v1", tr.img)
	amd, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr.index = mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref, err := name.ParseReference(pushHost + "/test/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, tr.index); err != nil {
		t.Fatal(err)
	}
	return tr
}

func push(t *testing.T, s string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, s string) reference.Ref {
	t.Helper()
	r, err := reference.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newResolver(t *testing.T, opts Options) *Resolver {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hashOf(t *testing.T, f func() (v1.Hash, error)) digest.Digest {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// pullAll resolves ref and fetches its config and every layer, verifying
// each, the way the image service will.
func pullAll(t *testing.T, r *Resolver, ref reference.Ref, auth *Auth, img v1.Image) {
	t.Helper()
	ctx := context.Background()
	desc, data, err := r.Resolve(ctx, ref, auth)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	raw, _ := img.RawManifest()
	if !bytes.Equal(data, raw) || desc.Digest != hashOf(t, img.Digest) || desc.Size != int64(len(raw)) {
		t.Fatalf("Resolve(%s) = %+v, bytes differ: %v", ref, desc, !bytes.Equal(data, raw))
	}
	if desc.MediaType != mediatype.DockerManifest {
		t.Errorf("media type %q", desc.MediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	cfg, err := r.FetchManifest(ctx, ref, m.Config, auth)
	if err != nil {
		t.Fatalf("FetchManifest(config): %v", err)
	}
	if want, _ := img.RawConfigFile(); !bytes.Equal(cfg, want) {
		t.Error("config bytes differ")
	}
	for _, l := range m.Layers {
		rc, err := r.FetchBlob(ctx, ref, l, auth)
		if err != nil {
			t.Fatalf("FetchBlob(%s): %v", l.Digest, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil || n != l.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != l.Digest.String() {
			t.Errorf("layer %s: %d bytes, %v", l.Digest, n, err)
		}
	}
}
