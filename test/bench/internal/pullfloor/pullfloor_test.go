package pullfloor

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/test/bench/internal/multilayer"
)

// The floor writes every file of a layer the benchmark builds, with its
// content and mode, and counts the compressed bytes it read.
func TestUnpack(t *testing.T) {
	shape := multilayer.Shape{Layers: 1, RandomFiles: 2, RandomSize: 3000, TextFiles: 25, TextSize: 500, Pause: true}
	img, err := multilayer.Build(shape, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	blob, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	size, _ := layers[0].Size()
	dir := t.TempDir()
	n, err := unpack(blob, dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Errorf("read %d compressed bytes, the blob has %d", n, size)
	}
	st, err := os.Stat(filepath.Join(dir, multilayer.PausePath))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("pause: %v, %v", st, err)
	}
	files := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
		if d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if want := 1 + shape.RandomFiles + shape.TextFiles; files != want {
		t.Errorf("%d files, want %d", files, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench/l0/text/d0/t0.txt"))
	if err != nil || len(b) != 500 || !bytes.Contains(b, []byte(" ")) {
		t.Errorf("t0.txt: %d bytes, %v", len(b), err)
	}
}

func TestWithin(t *testing.T) {
	for entry, want := range map[string]string{
		"a/b":          "/d/a/b",
		"./a":          "/d/a",
		"../../etc/x":  "/d/etc/x",
		"/abs/path":    "/d/abs/path",
		"a/../../b/c/": "/d/b/c",
	} {
		if got, err := within("/d", entry); err != nil || got != want {
			t.Errorf("within(/d, %q) = %q, %v; want %q", entry, got, err, want)
		}
	}
	if _, err := within("/d", "../"); err == nil {
		t.Error("an entry naming the root itself was accepted")
	}
}
