package multilayer

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// A small shape builds in milliseconds and shows the properties the
// benchmark relies on: the layer count, and the same digest at every build.
func TestBuildIsReproducible(t *testing.T) {
	small := Shape{Layers: 2, RandomFiles: 1, RandomSize: 4096, TextFiles: 25, TextSize: 1000}
	digest := func(dir string) string {
		img, err := Build(small, dir)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != small.Layers {
			t.Fatalf("%d layers, want %d", len(layers), small.Layers)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	first, second := digest(t.TempDir()), digest(t.TempDir())
	if first != second {
		t.Errorf("two builds gave %s and %s", first, second)
	}
}

// The text half of a layer must compress (the unpack path), the random
// half must not (the download path).
func TestTextCompressesRandomDoesNot(t *testing.T) {
	ratio := func(r io.Reader) float64 {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := io.CopyN(zw, r, 1<<20); err != nil {
			t.Fatal(err)
		}
		zw.Close()
		return float64(1<<20) / float64(buf.Len())
	}
	if r := ratio(&textReader{rng: rand.New(rand.NewChaCha8(seed("text", 0)))}); r < 2 || r > 8 {
		t.Errorf("text compresses %.1f:1, want between 2:1 and 8:1", r)
	}
	if r := ratio(rand.NewChaCha8(seed("random", 0))); r > 1.01 {
		t.Errorf("random data compresses %.2f:1", r)
	}
}
