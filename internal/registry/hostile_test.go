package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// Tests against registries that misbehave on purpose (issue 9, hostile
// input): every request must end, with an error naming the cause, and leave
// no goroutine behind.

// hostile is a registry on 127.0.0.1 answering /v2/ and handing every other
// request to serve.
func hostile(t *testing.T, serve http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return
		}
		serve(w, req)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// An endless layer body is cut at the descriptor's size, even when the
// descriptor says 0 (regression: a size-0 descriptor disabled the limit).
func TestEndlessBlob(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	host := hostile(t, func(w http.ResponseWriter, req *http.Request) {
		chunk := bytes.Repeat([]byte{0}, 32<<10)
		for req.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := newResolver(t, Options{})
	ref := mustParse(t, host+"/endless:v1")
	for _, size := range []int64{0, 1 << 20} {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("x"), Size: size}
		rc, err := r.FetchBlob(context.Background(), ref, desc, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if !errors.Is(err, ErrDigestMismatch) || n != size {
			t.Errorf("size %d: read %d bytes, %v; want the descriptor's size then ErrDigestMismatch", size, n, err)
		}
	}
	cfg := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("x"), Size: 0}
	if _, err := r.FetchManifest(context.Background(), ref, cfg, nil); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("endless config: %v, want ErrResourceExhausted", err)
	}
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: 100}
	if _, err := r.FetchManifest(context.Background(), ref, man, nil); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("endless manifest: %v, want ErrResourceExhausted", err)
	}
}

// A config larger than MaxConfigSize is refused before or while reading,
// whatever its descriptor claims.
func TestConfigCap(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	env := make([]string, 0, 100_000)
	for i := range cap(env) {
		env = append(env, fmt.Sprintf("VAR_%06d=%s", i, strings.Repeat("v", 90)))
	}
	data, err := json.Marshal(ocispec.Image{Config: ocispec.ImageConfig{Env: env}})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 10_000_000 {
		t.Fatalf("config of %d bytes, want 10 MB", len(data))
	}
	host := hostile(t, func(w http.ResponseWriter, req *http.Request) { w.Write(data) })
	r := newResolver(t, Options{})
	ref := mustParse(t, host+"/big:v1")
	for _, size := range []int64{int64(len(data)), 1000} {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(data), Size: size}
		_, err := r.FetchManifest(context.Background(), ref, desc, nil)
		if size == 1000 {
			if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, errdefs.ErrResourceExhausted) {
				t.Errorf("config lying about its size: %v", err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "big") {
			t.Errorf("10 MB config: %v, want ErrResourceExhausted naming the image", err)
		}
	}
}

// A Content-Length that disagrees with the descriptor fails at once; a body
// shorter than its Content-Length fails the read.
func TestContentLengthLies(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	data := bytes.Repeat([]byte("layer"), 1000)
	var mode atomic.Value
	host := hostile(t, func(w http.ResponseWriter, req *http.Request) {
		switch mode.Load() {
		case "short header":
			w.Header().Set("Content-Length", fmt.Sprint(len(data)-10))
			w.Write(data[:len(data)-10])
		case "long header":
			w.Header().Set("Content-Length", fmt.Sprint(len(data)+10))
			w.Write(data)
		case "truncated body":
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:100])
			// The handler returns: the server closes the connection.
			if hj, ok := w.(http.Hijacker); ok {
				w.(http.Flusher).Flush()
				c, _, err := hj.Hijack()
				if err == nil {
					c.Close()
				}
			}
		}
	})
	r := newResolver(t, Options{})
	ref := mustParse(t, host+"/liar:v1")
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(data), Size: int64(len(data))}
	for _, m := range []string{"short header", "long header", "truncated body"} {
		mode.Store(m)
		rc, err := r.FetchBlob(context.Background(), ref, desc, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err == nil {
			t.Errorf("%s: no error", m)
			continue
		}
		if m != "truncated body" && (!errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "liar")) {
			t.Errorf("%s: %v, want ErrDigestMismatch naming the image", m, err)
		}
	}
}

// A redirect loop ends after a bounded number of hops, with an error that
// says so.
func TestRedirectLoop(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	var hops atomic.Int64
	host := hostile(t, func(w http.ResponseWriter, req *http.Request) {
		hops.Add(1)
		http.Redirect(w, req, req.URL.Path+"x", http.StatusFound)
	})
	r := newResolver(t, Options{})
	ref := mustParse(t, host+"/loop:v1")
	_, _, err := r.Resolve(context.Background(), ref, nil)
	if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "loop:v1") {
		t.Fatalf("Resolve = %v, want an error about redirects naming the image", err)
	}
	if n := hops.Load(); n > maxRedirects+1 {
		t.Errorf("%d requests, want at most %d", n, maxRedirects+1)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("x"), Size: 1}
	if _, err := r.FetchBlob(context.Background(), ref, desc, nil); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("FetchBlob = %v, want an error about redirects", err)
	}
}

// A registry failing with 500 gives an error starting with
// "RegistryUnavailable" that names the status; the next try succeeds.
func TestServerErrorThenSuccess(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	var fail atomic.Bool
	fail.Store(true)
	reg := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if fail.Load() && req.URL.Path != "/v2/" {
				http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}`, http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	r := newResolver(t, Options{})
	ref := mustParse(t, reg.host+"/test/img:v1")
	_, _, err := r.Resolve(context.Background(), ref, nil)
	if !errors.Is(err, ErrRegistryUnavailable) || !strings.HasPrefix(err.Error(), "RegistryUnavailable") ||
		!strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "test/img:v1") {
		t.Fatalf("Resolve = %v", err)
	}
	fail.Store(false)
	pullAll(t, r, ref, nil, reg.img)
}

// Credentials never reach an error, even when the registry or its token
// server puts them, or what it received, in its answer.
func TestEchoedCredentialsRedacted(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	const user, pass, token = "berth", "hunter2-secret", "tok-abcdef-987"
	secrets := []string{pass, token, b64(user + ":" + pass)}
	echo := func(req *http.Request) string {
		u, p, _ := req.BasicAuth()
		return fmt.Sprintf("%s %s %s %s", u, p, req.Header.Get("Authorization"), req.URL.RawQuery)
	}
	cases := []struct {
		name  string
		serve func(w http.ResponseWriter, req *http.Request, host string)
	}{
		{"401 body and codes", func(w http.ResponseWriter, req *http.Request, host string) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+echo(req)+`"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":%q}]}`, pass, echo(req), echo(req))
		}},
		{"500 plain body", func(w http.ResponseWriter, req *http.Request, host string) {
			if req.Header.Get("Authorization") == "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Error(w, "you sent: "+echo(req), http.StatusInternalServerError)
		}},
		{"token server echoes without a token", func(w http.ResponseWriter, req *http.Request, host string) {
			if req.URL.Path == "/token" {
				fmt.Fprintf(w, `{"echo":%q}`, echo(req))
				return
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, host))
			w.WriteHeader(http.StatusUnauthorized)
		}},
		{"token server error", func(w http.ResponseWriter, req *http.Request, host string) {
			if req.URL.Path == "/token" {
				http.Error(w, echo(req), http.StatusForbidden)
				return
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token?x=%s",service="test"`, host, pass))
			w.WriteHeader(http.StatusUnauthorized)
		}},
		{"token accepted, then manifest echoes it", func(w http.ResponseWriter, req *http.Request, host string) {
			if req.URL.Path == "/token" {
				fmt.Fprintf(w, `{"token":%q}`, token)
				return
			}
			if req.Header.Get("Authorization") == "" {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, host))
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"errors":[{"code":"%s","message":"%s"}]}`, token, echo(req))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var host string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				tc.serve(w, req, host)
			}))
			defer srv.Close()
			host = strings.TrimPrefix(srv.URL, "http://")
			r := newResolver(t, Options{})
			ref := mustParse(t, host+"/secret:v1")
			for _, auth := range []*Auth{{Username: user, Password: pass}, {Auth: b64(user + ":" + pass)}} {
				_, _, err := r.Resolve(context.Background(), ref, auth)
				if err == nil {
					t.Fatal("Resolve succeeded")
				}
				for _, s := range secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error holds the secret %q: %v", s, err)
					}
				}
			}
		})
	}
}
