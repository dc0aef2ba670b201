package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/testsupport"
)

// Pulls from hostile or broken registries, and of malformed images (issue
// 9): each ends within a bounded time with an error naming the image and
// the cause, and leaves no record, snapshot, blob, temp file or goroutine.

// stallTimeout is image_pull_progress_timeout in the slow-loris cases.
const stallTimeout = 300 * time.Millisecond

// pathHas reports whether req asks for a manifest (kind "manifests") or a
// blob ("blobs") whose path contains s.
func pathHas(req *http.Request, kind, s string) bool {
	return strings.Contains(req.URL.Path, "/"+kind+"/") && strings.Contains(req.URL.Path, s)
}

// endless writes chunks of data until the client goes away.
func (f *fakeRegistry) endless(w http.ResponseWriter, req *http.Request, prefix []byte) {
	w.Write(prefix)
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	for req.Context().Err() == nil {
		select {
		case <-f.done:
			return
		default:
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// slowHeaders takes over the connection and sends a status line and
// headers that never end, a byte every 10 ms.
func (f *fakeRegistry) slowHeaders(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	head := "HTTP/1.1 200 OK\r\nX-Slow: " + strings.Repeat("a", 1<<20)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range len(head) {
		select {
		case <-tick.C:
		case <-f.done:
			return
		}
		if _, err := c.Write([]byte{head[i]}); err != nil {
			return
		}
	}
}

// blobOf is the stored blob req asks for.
func (f *fakeRegistry) blobOf(req *http.Request) []byte {
	_, d, _ := strings.Cut(req.URL.Path, "/blobs/")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.docs["blobs/"+d].data
}

func serverError(w http.ResponseWriter) {
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprint(w, `{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}`)
}

func redirectLoop(w http.ResponseWriter, req *http.Request) {
	http.Redirect(w, req, req.URL.Path+"x", http.StatusFound)
}

func TestHostilePulls(t *testing.T) {
	type setup func(t *testing.T, f *fakeRegistry) string // returns the ref to pull
	// layered stores a valid two-layer image as repo:v1 and, when hook is
	// set, serves its first layer's blob with it.
	layered := func(repo string, im fakeImage, hook func(f *fakeRegistry, w http.ResponseWriter, req *http.Request)) setup {
		return func(t *testing.T, f *fakeRegistry) string {
			if im.layers == nil {
				im.layers = [][]byte{smallTar(t, "a"), smallTar(t, "b")}
			}
			first := digest.FromBytes(im.layers[0]).String()
			f.image(t, repo, "v1", im)
			if hook != nil {
				f.setHook(func(w http.ResponseWriter, req *http.Request) bool {
					if pathHas(req, "blobs", first) {
						hook(f, w, req)
						return true
					}
					return false
				})
			}
			return f.ref(repo + ":v1")
		}
	}
	// manifestHook serves every manifest request of repo with hook.
	manifestHook := func(repo string, hook func(f *fakeRegistry, w http.ResponseWriter, req *http.Request)) setup {
		return func(t *testing.T, f *fakeRegistry) string {
			f.image(t, repo, "v1", fakeImage{layers: [][]byte{smallTar(t, "a")}})
			f.setHook(func(w http.ResponseWriter, req *http.Request) bool {
				if pathHas(req, "manifests", repo) {
					hook(f, w, req)
					return true
				}
				return false
			})
			return f.ref(repo + ":v1")
		}
	}
	bigManifest := append([]byte(`{"schemaVersion":2,"x":"`), bytes.Repeat([]byte("a"), registry.MaxManifestSize+1)...)
	bigConfig := func() []byte {
		env := make([]string, 100_000)
		for i := range env {
			env[i] = fmt.Sprintf("VAR_%06d=%s", i, strings.Repeat("v", 90))
		}
		return mustJSON(t, ocispec.Image{Config: ocispec.ImageConfig{Env: env}, RootFS: ocispec.RootFS{Type: "layers"}})
	}()
	setLayerType := func(mt string) func(*ocispec.Manifest) {
		return func(m *ocispec.Manifest) {
			m.Layers[0].MediaType = mt
			m.Layers[0].URLs = []string{"http://127.0.0.1:1/foreign"}
		}
	}

	for _, tc := range []struct {
		name     string
		setup    setup
		want     error    // wrapped sentinel
		contains []string // besides the image reference
		stall    bool     // run with the short progress timeout
	}{
		// Manifests and indexes.
		{name: "manifest over the cap", want: errdefs.ErrResourceExhausted, contains: []string{"exceeds"},
			setup: manifestHook("big", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(bigManifest)))
				w.Write(bigManifest)
			})},
		{name: "endless manifest", want: errdefs.ErrResourceExhausted, contains: []string{"exceeds"},
			setup: manifestHook("endless", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				f.endless(w, req, []byte(`{"schemaVersion":2,"x":"`))
			})},
		{name: "index entry over the cap", want: errdefs.ErrResourceExhausted, contains: []string{"limit"},
			setup: func(t *testing.T, f *fakeRegistry) string {
				f.index(t, "bigchild", "v1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: registry.MaxManifestSize + 1})
				return f.ref("bigchild:v1")
			}},
		{name: "manifest served as an index", want: errdefs.ErrInvalidArgument, contains: []string{"not an index"},
			setup: layered("ctlie", fakeImage{contentType: ocispec.MediaTypeImageIndex, editMan: func(m *ocispec.Manifest) { m.MediaType = "" }}, nil)},
		{name: "manifest whose mediaType says index", want: errdefs.ErrInvalidArgument, contains: []string{"not an index"},
			setup: layered("mtlie", fakeImage{editMan: func(m *ocispec.Manifest) { m.MediaType = ocispec.MediaTypeImageIndex }}, nil)},
		{name: "index entry declared a manifest is an index", want: errdefs.ErrInvalidArgument, contains: []string{"mediaType field says"},
			setup: func(t *testing.T, f *fakeRegistry) string {
				inner := f.index(t, "nest", "", f.image(t, "nest", "", fakeImage{layers: [][]byte{smallTar(t, "a")}}))
				inner.MediaType = ocispec.MediaTypeImageManifest
				f.index(t, "nest", "v1", inner)
				return f.ref("nest:v1")
			}},
		{name: "index pointing to itself", want: registry.ErrDigestMismatch, contains: []string{"digest"},
			setup: func(t *testing.T, f *fakeRegistry) string {
				self := f.index(t, "self", "v1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("me"), Size: 200})
				data := f.docs["self/manifests/v1"].data
				// Whatever is asked for, the same index comes back.
				f.setHook(func(w http.ResponseWriter, req *http.Request) bool {
					if pathHas(req, "manifests", "self") {
						w.Header().Set("Content-Type", self.MediaType)
						w.Write(data)
						return true
					}
					return false
				})
				return f.ref("self:v1")
			}},
		{name: "indexes nested too deep", want: errdefs.ErrInvalidArgument, contains: []string{"nested"},
			setup: func(t *testing.T, f *fakeRegistry) string {
				d := f.image(t, "deep", "", fakeImage{layers: [][]byte{smallTar(t, "a")}})
				for range maxIndexDepth + 2 {
					d = f.index(t, "deep", "", d)
				}
				f.manifest("deep", "v1", d.MediaType, f.docs["deep/manifests/"+d.Digest.String()].data)
				return f.ref("deep:v1")
			}},
		// Layers of types berthd does not unpack.
		{name: "foreign layer", want: errdefs.ErrInvalidArgument, contains: []string{"foreign"},
			setup: layered("foreign", fakeImage{editMan: setLayerType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")}, nil)},
		{name: "non-distributable layer", want: errdefs.ErrInvalidArgument, contains: []string{"foreign"},
			setup: layered("nondist", fakeImage{editMan: setLayerType("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")}, nil)},
		{name: "encrypted layer", want: errdefs.ErrInvalidArgument, contains: []string{"encrypted"},
			setup: layered("encrypted", fakeImage{editMan: setLayerType(ocispec.MediaTypeImageLayerGzip + "+encrypted")}, nil)},
		{name: "unknown layer type", want: errdefs.ErrInvalidArgument, contains: []string{"application/x-evil"},
			setup: layered("evil", fakeImage{editMan: setLayerType("application/x-evil")}, nil)},
		{name: "config as a layer", want: errdefs.ErrInvalidArgument, contains: []string{"not a layer type"},
			setup: layered("cfglayer", fakeImage{editMan: setLayerType(ocispec.MediaTypeImageConfig)}, nil)},
		{name: "too many layers", want: errdefs.ErrInvalidArgument, contains: []string{"layers"},
			setup: layered("many", fakeImage{
				editConfig: func(c *ocispec.Image) {
					for len(c.RootFS.DiffIDs) <= maxLayers {
						c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, c.RootFS.DiffIDs[0])
					}
				},
				editMan: func(m *ocispec.Manifest) {
					for len(m.Layers) <= maxLayers {
						m.Layers = append(m.Layers, m.Layers[0])
					}
				}}, nil)},
		// Malformed configs.
		{name: "config not JSON", want: errdefs.ErrInvalidArgument, contains: []string{"image config"},
			setup: layered("notjson", fakeImage{rawConfig: []byte("this is {not JSON")}, nil)},
		{name: "config of 10 MB", want: errdefs.ErrResourceExhausted, contains: []string{"limit"},
			setup: layered("bigcfg", fakeImage{rawConfig: bigConfig}, nil)},
		{name: "config of 10 MB declared small", want: registry.ErrDigestMismatch,
			setup: layered("bigcfg2", fakeImage{rawConfig: bigConfig, editMan: func(m *ocispec.Manifest) { m.Config.Size = 1000 }}, nil)},
		{name: "fewer diff ids than layers", want: errdefs.ErrInvalidArgument, contains: []string{"1 diff ids for 2 layers"},
			setup: layered("count", fakeImage{editConfig: func(c *ocispec.Image) { c.RootFS.DiffIDs = c.RootFS.DiffIDs[:1] }}, nil)},
		{name: "no layers, diff ids in the config", want: errdefs.ErrInvalidArgument, contains: []string{"2 diff ids for 0 layers"},
			setup: layered("nolayers", fakeImage{editMan: func(m *ocispec.Manifest) { m.Layers = nil }}, nil)},
		// Layer bodies.
		{name: "layer Content-Length lies", want: registry.ErrDigestMismatch, contains: []string{"bytes"},
			setup: layered("cl", fakeImage{}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Length", "100000")
				w.Write([]byte("short"))
			})},
		{name: "endless layer", want: registry.ErrDigestMismatch,
			setup: layered("endlesslayer", fakeImage{}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				f.endless(w, req, f.blobOf(req)) // the real layer, then more
			})},
		{name: "endless layer declared empty", want: registry.ErrDigestMismatch,
			setup: layered("endless0", fakeImage{editMan: func(m *ocispec.Manifest) { m.Layers[0].Size = 0 }}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				f.endless(w, req, nil)
			})},
		// Unavailable registries: the error starts with "RegistryUnavailable".
		{name: "500 on the manifest", want: registry.ErrRegistryUnavailable, contains: []string{"500"},
			setup: manifestHook("down", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { serverError(w) })},
		{name: "500 on a layer", want: registry.ErrRegistryUnavailable, contains: []string{"500"},
			setup: layered("layerdown", fakeImage{}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { serverError(w) })},
		{name: "redirect loop on the manifest", contains: []string{"redirect"},
			setup: manifestHook("loop", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { redirectLoop(w, req) })},
		{name: "redirect loop on a layer", contains: []string{"redirect"},
			setup: layered("layerloop", fakeImage{}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { redirectLoop(w, req) })},
		// Slow loris: a byte every 10 ms.
		{name: "slow manifest headers", stall: true, contains: []string{"image_pull_progress_timeout"},
			setup: manifestHook("slowhead", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { f.slowHeaders(w) })},
		{name: "slow manifest body", stall: true, contains: []string{"image_pull_progress_timeout"},
			setup: manifestHook("slowman", func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
				f.trickle(w, req, bigManifest, 10*time.Millisecond)
			})},
		{name: "slow layer headers", stall: true, contains: []string{"image_pull_progress_timeout"},
			setup: layered("slowlayerhead", fakeImage{}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) { f.slowHeaders(w) })},
		{name: "slow layer body", stall: true, contains: []string{"image_pull_progress_timeout"},
			setup: func(t *testing.T, f *fakeRegistry) string {
				big := tarOf(t, map[string]string{"big": strings.Repeat("x", 64<<10)})
				return layered("slowlayer", fakeImage{layers: [][]byte{big}}, func(f *fakeRegistry, w http.ResponseWriter, req *http.Request) {
					w.Header().Set("Content-Length", fmt.Sprint(len(big)))
					f.trickle(w, req, big, 10*time.Millisecond)
				})(t, f)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testsupport.NoGoroutineLeaks(t)
			f := newFakeRegistry(t)
			ref := tc.setup(t, f)
			e := newTestEnv(t, nil, func(o *Options) {
				fixedPlatform(o)
				if tc.stall {
					o.PullProgressTimeout = stallTimeout
				}
			})
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := e.svc.Pull(ctx, ref, nil, "")
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("pull took %s", took)
			}
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				t.Fatalf("pull ended only by the test's deadline: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			prefix := "pull image "
			if errors.Is(err, registry.ErrRegistryUnavailable) {
				prefix = "RegistryUnavailable"
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), ref) {
				t.Errorf("error %q does not start with %q and name %s", err, prefix, ref)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			e.assertNothingLeft(t, ref)
		})
	}
}

// An image without layers (and without diff ids) is valid: the snapshot
// store gives its containers an empty lower directory.
func TestPullZeroLayers(t *testing.T) {
	testsupport.NoGoroutineLeaks(t)
	f := newFakeRegistry(t)
	f.image(t, "empty", "v1", fakeImage{})
	e := newTestEnv(t, nil, fixedPlatform)
	img := e.pull(t, f.ref("empty:v1"))
	if len(img.ChainIDs) != 0 || e.snapshots(t) != 0 {
		t.Fatalf("record %+v, %d snapshots", img, e.snapshots(t))
	}
}

// A trickle that keeps progress alive byte by byte does not keep a
// download going past the progress timeout (regression: every byte reset
// the timer, so a slow loris held a download slot for as many seconds as
// the layer had bytes).
func TestStallWatchSlowLoris(t *testing.T) {
	ctx, watch, stop := watchStall(context.Background(), stallTimeout, "download layer x")
	defer stop()
	r := watch.reader(strings.NewReader(strings.Repeat("x", 1<<20)))
	one := make([]byte, 1)
	deadline := time.Now().Add(10 * stallTimeout)
	for ctx.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a byte every 5 ms kept the download alive")
		}
		r.Read(one)
		time.Sleep(5 * time.Millisecond) // the trickle's pace, not synchronisation
	}
	if c := context.Cause(ctx); c == nil || !strings.Contains(c.Error(), "image_pull_progress_timeout") {
		t.Fatalf("cause = %v", c)
	}
	// Real progress counts: minProgress bytes touch the watch, a byte does
	// not (checked on the timestamp, not by timing).
	_, watch, stop = watchStall(context.Background(), time.Hour, "download layer y")
	defer stop()
	r = watch.reader(bytes.NewReader(make([]byte, 1<<20)))
	watch.last.Store(0)
	r.Read(one)
	if watch.last.Load() != 0 {
		t.Fatal("one byte counted as progress")
	}
	io.ReadFull(r, make([]byte, minProgress))
	if watch.last.Load() == 0 {
		t.Fatalf("%d bytes did not count as progress", minProgress)
	}
}
