package signedimage

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushAndSign pushes the workload's two images to an in-memory
// registry and signs one: distinct manifests over one shared layer, and
// the cosign tag of the signed manifest beside it.
func TestPushAndSign(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, host+"/base:1"), base); err != nil {
		t.Fatal(err)
	}
	ds, err := Push(ctx, host+"/base:1", host+"/p/signed:1", host+"/p/accept:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0] == ds[1] {
		t.Fatalf("digests %v: want two distinct manifests", ds)
	}
	var layers []string
	for _, ref := range []string{host + "/p/signed:1", host + "/p/accept:1"} {
		img, err := remote.Image(mustRef(t, ref))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("%s: layers %v, %v: want one", ref, ls, err)
		}
		d, _ := ls[0].Digest()
		layers = append(layers, d.String())
	}
	if layers[0] != layers[1] {
		t.Errorf("layers %v: want one shared layer", layers)
	}

	dir := t.TempDir()
	pub, err := Sign(host, "p/signed", ds[0], dir, "k.pub")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "k.pub")); err != nil || pub != filepath.Join(dir, "k.pub") || !strings.Contains(string(b), "PUBLIC KEY") {
		t.Errorf("public key %s: %q, %v", pub, b, err)
	}
	sigTag := host + "/p/signed:sha256-" + ds[0].Encoded() + ".sig"
	if _, err := remote.Head(mustRef(t, sigTag)); err != nil {
		t.Errorf("cosign tag %s: %v", sigTag, err)
	}
}

// TestRunFatal: a Fatal of sigtest's helpers, or a call of a method tb
// lacks, ends the signing with an error instead of the benchmark.
func TestRunFatal(t *testing.T) {
	err := run(func(t testing.TB) { t.Fatalf("no key %d", 1) })
	if err == nil || !strings.Contains(err.Error(), "no key 1") {
		t.Errorf("Fatalf: got %v", err)
	}
	if err := run(func(t testing.TB) { t.TempDir() }); err == nil {
		t.Error("a method tb lacks: got no error")
	}
	if err := run(func(testing.TB) {}); err != nil {
		t.Errorf("no failure: got %v", err)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
