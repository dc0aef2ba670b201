package multilayer

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

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

// The pause program is a valid static x86-64 executable whose entry point
// is its code, and it runs (and keeps running) where it can.
func TestPauseELF(t *testing.T) {
	b := pauseELF()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || f.Class != elf.ELFCLASS64 {
		t.Fatalf("machine %v type %v class %v", f.Machine, f.Type, f.Class)
	}
	if len(f.Progs) != 1 || f.Progs[0].Filesz != uint64(len(b)) || f.Entry != f.Progs[0].Vaddr+120 {
		t.Fatalf("segments %+v, entry %#x", f.Progs, f.Entry)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		// skip: a platform fact, not a capability: the program is x86-64 Linux code.
		t.Skip("runs on linux/amd64 only")
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cmd.Process.Kill()
	<-done
}

// A shape with Pause has the program as its first file, executable, and
// as the image's entrypoint; the cache names differ by shape.
func TestPauseShape(t *testing.T) {
	small := Shape{Layers: 2, RandomFiles: 1, RandomSize: 4096, TextFiles: 3, TextSize: 1000, Pause: true}
	img, err := Build(small, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != PausePath || cfg.Config.Cmd != nil {
		t.Errorf("entrypoint %q cmd %q", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, err := tar.NewReader(rc).Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "pause" || h.Mode != 0o755 || h.Size != int64(len(pauseELF())) {
		t.Errorf("first entry %q mode %o size %d", h.Name, h.Mode, h.Size)
	}
	names := map[string]bool{}
	for _, s := range []Shape{Default, Large, Layers100, small, {Layers: 2, RandomFiles: 1, RandomSize: 4096, TextFiles: 3, TextSize: 1000}} {
		n := s.layerName(0)
		if names[n] {
			t.Errorf("two shapes share the cache name %s", n)
		}
		names[n] = true
	}
	if Large.layerSize() != 1<<30 || Layers100.Layers != 100 {
		t.Errorf("Large is %d bytes, Layers100 has %d layers", Large.layerSize(), Layers100.Layers)
	}
}
