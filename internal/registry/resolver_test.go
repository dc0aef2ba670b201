package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestPullFromLoopbackRegistry(t *testing.T) {
	reg := startRegistry(t, nil)
	rec := newRecorder()
	r := newResolver(t, Options{Transport: rec, UserAgent: "berth-test"})
	pullAll(t, r, mustParse(t, reg.host+"/test/img:v1"), nil, reg.img)

	// By digest, with and without a tag: the digest wins.
	d := hashOf(t, reg.img.Digest)
	for _, s := range []string{reg.host + "/test/img@" + d.String(), reg.host + "/test/img:nosuchtag@" + d.String()} {
		desc, _, err := r.Resolve(context.Background(), mustParse(t, s), nil)
		if err != nil || desc.Digest != d {
			t.Errorf("Resolve(%s) = %v, %v", s, desc.Digest, err)
		}
	}
	for _, req := range rec.requests() {
		if !strings.HasPrefix(req, "http://"+reg.host+"/v2/") {
			t.Errorf("unexpected request %s", req)
		}
	}
}

func TestPullIndex(t *testing.T) {
	reg := startRegistry(t, nil)
	r := newResolver(t, Options{})
	ref := mustParse(t, reg.host+"/test/multi:v1")
	desc, data, err := r.Resolve(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex || desc.Digest != hashOf(t, reg.index.Digest) {
		t.Fatalf("Resolve = %+v", desc)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range idx.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		child, err := r.FetchManifest(context.Background(), ref, m, nil)
		if err != nil {
			t.Fatalf("FetchManifest(%s): %v", m.Digest, err)
		}
		if digest.FromBytes(child) != m.Digest {
			t.Error("child manifest digest")
		}
	}
	if strings.Join(platforms, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", platforms)
	}
}

func TestNotFound(t *testing.T) {
	reg := startRegistry(t, nil)
	r := newResolver(t, Options{})
	ctx := context.Background()
	_, _, err := r.Resolve(ctx, mustParse(t, reg.host+"/test/img:nope"), nil)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, part := range []string{reg.host + "/test/img:nope", "http://" + reg.host + "/v2", "404"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("absent"), Size: 6}
	if _, err := r.FetchBlob(ctx, mustParse(t, reg.host+"/test/img:v1"), missing, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("FetchBlob(missing) = %v", err)
	}
}

func TestMirrorOnlyNeverContactsUpstream(t *testing.T) {
	reg := startRegistry(t, nil)
	dir := t.TempDir()
	writeHosts(t, dir, map[string]string{"docker.io": fmt.Sprintf(`
server = "http://%[1]s"
[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, reg.host)})
	rec := newRecorder()
	r := newResolver(t, Options{ConfigPath: dir, Transport: rec})
	// docker.io/test/img is test/img on the mirror.
	pullAll(t, r, mustParse(t, "test/img:v1"), nil, reg.img)
	// A miss on the mirror is a miss: no fallback to the real registry.
	if _, _, err := r.Resolve(context.Background(), mustParse(t, "busybox"), nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Resolve(busybox) = %v, want ErrNotFound", err)
	}
	for _, req := range rec.requests() {
		if !strings.HasPrefix(req, "http://"+reg.host+"/") {
			t.Errorf("request outside the mirror: %s", req)
		}
	}
}

func TestDefaultUpstreamAndUnavailable(t *testing.T) {
	rec := newRecorder()
	r := newResolver(t, Options{Transport: rec})
	_, _, err := r.Resolve(context.Background(), mustParse(t, "busybox"), nil)
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("err = %v, want ErrRegistryUnavailable", err)
	}
	if !strings.HasPrefix(err.Error(), "RegistryUnavailable") || errdefs.Code(err) != codes.Unknown {
		t.Errorf("kubelet would not show the reason: %q, code %v", err, errdefs.Code(err))
	}
	if !strings.Contains(err.Error(), "docker.io/library/busybox:latest") || !strings.Contains(err.Error(), "https://registry-1.docker.io/v2") {
		t.Errorf("error does not name image and host: %v", err)
	}
	if !rec.contacted("registry-1.docker.io") {
		t.Errorf("requests %v, want registry-1.docker.io", rec.requests())
	}

	// A real connection refused on loopback is unavailable too.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, _, err = r.Resolve(context.Background(), mustParse(t, closed+"/x:y"), nil)
	if !errors.Is(err, ErrRegistryUnavailable) || !strings.HasPrefix(err.Error(), "RegistryUnavailable") {
		t.Errorf("closed port: %v", err)
	}
}

func TestMirrorFallbackAndPreferredHost(t *testing.T) {
	regA := startRegistry(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	// down (unreachable) first, then B (pull only: cannot resolve tags and
	// has no copy), then A as the server.
	regB := startRegistry(t, nil)
	writeHosts(t, dir, map[string]string{"example.com": fmt.Sprintf(`
server = "http://%s"
[host."http://%s"]
[host."http://%s"]
  capabilities = ["pull"]
`, regA.host, down, regB.host)})
	rec := newRecorder()
	r := newResolver(t, Options{ConfigPath: dir, Transport: rec})
	pullAll(t, r, mustParse(t, "example.com/test/img:v1"), nil, regA.img)
	reqs := rec.requests()
	if !rec.contacted(down) {
		t.Errorf("the first mirror was not tried: %v", reqs)
	}
	for _, req := range reqs {
		if strings.Contains(req, regB.host+"/v2/test/img/manifests/v1") {
			t.Errorf("tag resolved on a pull-only host: %s", req)
		}
		if strings.Contains(req, "/blobs/") && !strings.Contains(req, regA.host) {
			t.Errorf("blob fetched from %s, not from the host that resolved", req)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	const user, pass = "berth", "s3cret-pass"
	reg := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	ref := mustParse(t, reg.host+"/test/img:v1")
	authFile := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(authFile, []byte(`{"auths":{"http://`+reg.host+`":{"auth":"`+b64(user+":"+pass)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := newResolver(t, Options{})
	withFile := newResolver(t, Options{AuthFile: authFile})

	t.Run("anonymous refused", func(t *testing.T) {
		_, _, err := plain.Resolve(context.Background(), ref, nil)
		if !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Fatalf("err = %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("wrong password refused, never echoed", func(t *testing.T) {
		_, _, err := plain.Resolve(context.Background(), ref, &Auth{Username: user, Password: "wrong-pass-xyz"})
		if !errors.Is(err, errdefs.ErrUnauthenticated) || strings.Contains(err.Error(), "wrong-pass-xyz") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("request username/password", func(t *testing.T) {
		pullAll(t, plain, ref, &Auth{Username: user, Password: pass}, reg.img)
	})
	t.Run("request auth field", func(t *testing.T) {
		pullAll(t, plain, ref, &Auth{Auth: b64(user + ":" + pass)}, reg.img)
	})
	t.Run("request credential for another server is not sent", func(t *testing.T) {
		_, _, err := plain.Resolve(context.Background(), ref, &Auth{Username: user, Password: pass, ServerAddress: "other.example.com"})
		if !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("node auth file", func(t *testing.T) {
		pullAll(t, withFile, ref, nil, reg.img)
	})
	t.Run("request credential wins over the file", func(t *testing.T) {
		_, _, err := withFile.Resolve(context.Background(), ref, &Auth{Username: user, Password: "wrong"})
		if !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestBearerAuth(t *testing.T) {
	const user, pass, token = "berth", "pw", "tok-123"
	var reg *testRegistry
	reg = startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/token" {
				if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
					http.Error(w, "no", http.StatusUnauthorized)
					return
				}
				if !strings.Contains(req.URL.Query().Get("scope"), "repository:test/img:pull") {
					http.Error(w, "scope", http.StatusForbidden)
					return
				}
				fmt.Fprintf(w, `{"token":%q}`, token)
				return
			}
			if req.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, reg.host))
				http.Error(w, "", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	ref := mustParse(t, reg.host+"/test/img:v1")
	r := newResolver(t, Options{})
	pullAll(t, r, ref, &Auth{Username: user, Password: pass}, reg.img)
	if _, _, err := r.Resolve(context.Background(), ref, &Auth{Username: user, Password: "bad"}); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("bad password: %v", err)
	}
}

// tamper serves altered content for manifests asked by digest and for
// blobs, to play a hostile registry.
func tamper(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case strings.Contains(req.URL.Path, "/manifests/sha256:"):
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := bytes.Replace(rec.Body.Bytes(), []byte(`"schemaVersion": 2`), []byte(`"schemaVersion":2`), 1)
			body = append(body, ' ')
			w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
			w.Write(body)
		case strings.Contains(req.URL.Path, "/blobs/"):
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			w.Write(append(rec.Body.Bytes(), "extra"...)) // no Content-Length: chunked
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		default:
			h.ServeHTTP(w, req)
		}
	})
}

func TestDigestMismatch(t *testing.T) {
	reg := startRegistry(t, tamper)
	r := newResolver(t, Options{})
	ctx := context.Background()
	d := hashOf(t, reg.img.Digest)
	ref := mustParse(t, reg.host+"/test/img@"+d.String())
	_, _, err := r.Resolve(ctx, ref, nil)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), reg.host) {
		t.Fatalf("Resolve = %v, want ErrDigestMismatch naming the host", err)
	}
	// By tag the content is what it is, but children are checked.
	desc, data, err := r.Resolve(ctx, mustParse(t, reg.host+"/test/img:v1"), nil)
	if err != nil || desc.Digest != d {
		t.Fatalf("Resolve(tag) = %v, %v", desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FetchManifest(ctx, ref, m.Config, nil); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("FetchManifest(config) = %v", err)
	}
	rc, err := r.FetchBlob(ctx, ref, m.Layers[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("reading an oversized blob: %v", err)
	}
}

func TestHostileSizes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Write([]byte(`{"schemaVersion":2,"x":"`))
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for i := 0; i < (MaxManifestSize/len(chunk))+2; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	r := newResolver(t, Options{})
	ref := mustParse(t, strings.TrimPrefix(srv.URL, "http://")+"/big:v1")
	if _, _, err := r.Resolve(context.Background(), ref, nil); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("Resolve(huge) = %v, want ErrResourceExhausted", err)
	}
	big := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("x"), Size: MaxConfigSize + 1}
	if _, err := r.FetchManifest(context.Background(), ref, big, nil); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("FetchManifest(huge) = %v", err)
	}
	bad := ocispec.Descriptor{Digest: "sha256:../../etc", Size: 1}
	if _, err := r.FetchBlob(context.Background(), ref, bad, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("FetchBlob(bad digest) = %v", err)
	}
}

func TestSchema1Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", string(types.DockerManifestSchema1Signed))
		w.Write([]byte(`{"schemaVersion":1,"fsLayers":[]}`))
	}))
	defer srv.Close()
	r := newResolver(t, Options{})
	_, _, err := r.Resolve(context.Background(), mustParse(t, strings.TrimPrefix(srv.URL, "http://")+"/old:v1"), nil)
	if !errors.Is(err, errdefs.ErrUnimplemented) {
		t.Errorf("err = %v, want ErrUnimplemented", err)
	}
}

func TestCancelled(t *testing.T) {
	reg := startRegistry(t, nil)
	r := newResolver(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := r.Resolve(ctx, mustParse(t, reg.host+"/test/img:v1"), nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRegistryUnavailable) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestReload: SIGHUP's Reload, and (issue 17 item 4, as in containerd) an
// edited hosts.toml taking effect at the next pull without one; a file that
// no longer parses fails the pull naming it, rather than pull from where
// the operator no longer wants.
func TestReload(t *testing.T) {
	reg := startRegistry(t, nil)
	dir := t.TempDir()
	good := map[string]string{"example.com": `server = "http://` + reg.host + `"`}
	unreachable := map[string]string{"example.com": `server = "http://127.0.0.1:1"`}
	writeHosts(t, dir, good)
	r := newResolver(t, Options{ConfigPath: dir})
	ref := mustParse(t, "example.com/test/img:v1")
	resolve := func(what string, want error) {
		t.Helper()
		_, _, err := r.Resolve(context.Background(), ref, nil)
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	resolve("first pull", nil)
	writeHosts(t, dir, map[string]string{"example.com": `server = `})
	if err := r.Reload(Options{ConfigPath: dir}); err == nil {
		t.Fatal("Reload accepted a broken file")
	}
	resolve("with a broken hosts.toml", errdefs.ErrInvalidArgument)
	writeHosts(t, dir, unreachable)
	if err := r.Reload(Options{ConfigPath: dir}); err != nil {
		t.Fatal(err)
	}
	resolve("after Reload", ErrRegistryUnavailable)
	writeHosts(t, dir, good)
	resolve("after an edit, no Reload", nil)
	writeHosts(t, dir, unreachable)
	resolve("after another edit", ErrRegistryUnavailable)
}

func TestConcurrentFetchesShareHandshake(t *testing.T) {
	var count int
	var mu sync.Mutex
	reg := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/v2/" {
				mu.Lock()
				count++
				mu.Unlock()
			}
			h.ServeHTTP(w, req)
		})
	})
	r := newResolver(t, Options{})
	ref := mustParse(t, reg.host+"/test/img:v1")
	_, data, err := r.Resolve(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		for _, l := range m.Layers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rc, err := r.FetchBlob(context.Background(), ref, l, nil)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, rc)
				rc.Close()
			}()
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if count != 1 {
		t.Errorf("%d pings, want 1 (one handshake per host and repository)", count)
	}
}

func TestMirrorPathsAndHeaders(t *testing.T) {
	// The mirror serves the registry API under /prefix and wants a header.
	reg := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Header.Get("X-Mirror-Key") != "k1" {
				http.Error(w, "no key", http.StatusForbidden)
				return
			}
			p, ok := strings.CutPrefix(req.URL.Path, "/prefix")
			if !ok {
				http.NotFound(w, req)
				return
			}
			req.URL.Path = p
			h.ServeHTTP(w, req)
		})
	})
	for name, hostKey := range map[string]string{
		"path gets /v2": `[host."http://` + reg.host + `/prefix"]`,
		"override_path": `[host."http://` + reg.host + `/prefix/v2"]` + "\n  override_path = true",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeHosts(t, dir, map[string]string{"quay.io": `server = "http://127.0.0.1:1"
` + hostKey + `
  header = { X-Mirror-Key = "k1" }
`})
			rec := newRecorder()
			r := newResolver(t, Options{ConfigPath: dir, Transport: rec})
			pullAll(t, r, mustParse(t, "quay.io/test/img:v1"), nil, reg.img)
			for _, req := range rec.requests() {
				if !strings.HasPrefix(req, "http://"+reg.host+"/prefix/v2/") {
					t.Errorf("request %s outside the mirror's API root", req)
				}
			}
		})
	}
}

func TestHTTPSMirrorWithCA(t *testing.T) {
	reg := startRegistryTLS(t, nil, true)
	dir := t.TempDir()
	caPath := filepath.Join(dir, "mirror-ca.crt")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.srv.Certificate().Raw})
	if err := os.WriteFile(caPath, pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	ref := mustParse(t, "quay.io/test/img:v1")
	t.Run("ca trusted", func(t *testing.T) {
		writeHosts(t, dir, map[string]string{"quay.io": `server = "https://` + reg.host + `"
ca = "` + caPath + `"`})
		pullAll(t, newResolver(t, Options{ConfigPath: dir}), ref, nil, reg.img)
	})
	t.Run("unknown authority", func(t *testing.T) {
		writeHosts(t, dir, map[string]string{"quay.io": `server = "https://` + reg.host + `"`})
		_, _, err := newResolver(t, Options{ConfigPath: dir}).Resolve(context.Background(), ref, nil)
		if !errors.Is(err, ErrRegistryUnavailable) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
	})
	t.Run("skip_verify", func(t *testing.T) {
		writeHosts(t, dir, map[string]string{"quay.io": `server = "https://` + reg.host + `"
skip_verify = true`})
		pullAll(t, newResolver(t, Options{ConfigPath: dir}), ref, nil, reg.img)
	})
}
