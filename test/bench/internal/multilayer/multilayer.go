// Package multilayer builds the image of the pull benchmark: five layers of
// about 40 MiB each, half random (incompressible: the download dominates)
// and half text in many small files (compressible: unpacking and file
// creation dominate). Content is generated from fixed seeds, so the image
// and its digest are the same on every machine and at every build.
package multilayer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

// Shape is the image's layout.
type Shape struct {
	Layers      int
	RandomFiles int   // per layer
	RandomSize  int64 // bytes per random file
	TextFiles   int   // per layer
	TextSize    int64 // bytes per text file
	// Pause adds PausePath (a tiny static program, see pauseELF) to the
	// first layer and makes it the entrypoint: a container starts from
	// the image alone.
	Pause bool
}

// Default is 5 layers of 40 MiB: 4 random files of 5 MiB and 320 text
// files of 64 KiB each, 200 MiB unpacked, about 125 MiB compressed.
var Default = Shape{Layers: 5, RandomFiles: 4, RandomSize: 5 << 20, TextFiles: 320, TextSize: 64 << 10}

// Large is one layer of 1 GiB: 64 random files of 8 MiB and 16384 text
// files of 32 KiB, about 690 MiB compressed: the size of the images users
// complain about (CUDA, ML frameworks), as a single layer, the case a
// runtime cannot speed up by unpacking layers side by side.
var Large = Shape{Layers: 1, RandomFiles: 64, RandomSize: 8 << 20, TextFiles: 16384, TextSize: 32 << 10, Pause: true}

// Layers100 is 100 layers of 1 MiB (one random file of 512 KiB and 16
// text files of 32 KiB each): 100 MiB unpacked, where the per-layer costs
// (requests, snapshots, mounts of many lower dirs) dominate.
var Layers100 = Shape{Layers: 100, RandomFiles: 1, RandomSize: 512 << 10, TextFiles: 16, TextSize: 32 << 10, Pause: true}

// Ensure makes sure ref is in its registry: when it is not, it builds the
// image (reusing the compressed layers cached in cacheDir) and pushes it.
// It returns the manifest digest and whether it pushed.
func Ensure(ctx context.Context, ref string, shape Shape, cacheDir string) (string, bool, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", false, err
	}
	if desc, err := remote.Head(r, remote.WithContext(ctx)); err == nil {
		return desc.Digest.String(), false, nil
	}
	img, err := Build(shape, cacheDir)
	if err != nil {
		return "", false, err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", false, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", false, err
	}
	return d.String(), true, nil
}

// Build returns the image, its layers from cacheDir (written on first use).
func Build(shape Shape, cacheDir string) (v1.Image, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	var layers []v1.Layer
	for i := range shape.Layers {
		path := filepath.Join(cacheDir, shape.layerName(i))
		if _, err := os.Stat(path); err != nil {
			if err := writeLayer(path, shape, i); err != nil {
				return nil, err
			}
		}
		l, err := tarball.LayerFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", path, err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"/bin/sh"}
	if shape.Pause {
		cfg.Config.Cmd, cfg.Config.Entrypoint = nil, []string{PausePath}
	}
	cfg.Config.Labels = map[string]string{"org.berth-cri.bench": "multilayer"}
	return mutate.ConfigFile(img, cfg)
}

// layerName is layer i's file in the cache: its shape in the name, so
// that two shapes never share a cached layer.
func (s Shape) layerName(i int) string {
	name := fmt.Sprintf("layer-%d-of-%d-%d", i, s.Layers, s.layerSize())
	if s.Pause {
		name += "-pause"
	}
	if s.TextSize != Default.TextSize || s.RandomSize != Default.RandomSize {
		name += fmt.Sprintf("-r%d-t%d", s.RandomSize, s.TextSize)
	}
	return name + ".tar.gz"
}

func (s Shape) layerSize() int64 {
	return int64(s.RandomFiles)*s.RandomSize + int64(s.TextFiles)*s.TextSize
}

// writeLayer writes layer i as a gzipped tar, through a temporary file so
// that an interrupted build never leaves a truncated layer in the cache.
func writeLayer(path string, shape Shape, i int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	if err := writeTar(zw, shape, i); err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeTar writes the files of layer i under /bench/l<i>, so that no two
// layers share a path (each layer adds, none overrides).
func writeTar(w io.Writer, shape Shape, i int) error {
	tw := tar.NewWriter(w)
	random := rand.NewChaCha8(seed("random", i))
	epoch := time.Unix(0, 0)
	dir := func(p string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode, size int64, content io.Reader) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: size, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.CopyN(tw, content, size)
		return err
	}
	if shape.Pause && i == 0 {
		if err := file(PausePath[1:], 0o755, int64(len(pauseELF())), bytes.NewReader(pauseELF())); err != nil {
			return err
		}
	}
	root := fmt.Sprintf("bench/l%d", i)
	for _, d := range []string{"bench", root, root + "/random", root + "/text"} {
		if err := dir(d); err != nil {
			return err
		}
	}
	for j := range shape.RandomFiles {
		if err := file(fmt.Sprintf("%s/random/r%d.bin", root, j), 0o644, shape.RandomSize, random); err != nil {
			return err
		}
	}
	const perDir = 20
	text := &textReader{rng: rand.New(rand.NewChaCha8(seed("text", i)))}
	for j := range shape.TextFiles {
		d := fmt.Sprintf("%s/text/d%d", root, j/perDir)
		if j%perDir == 0 {
			if err := dir(d); err != nil {
				return err
			}
		}
		if err := file(fmt.Sprintf("%s/t%d.txt", d, j), 0o644, shape.TextSize, text); err != nil {
			return err
		}
	}
	return tw.Close()
}

// seed is a fixed seed per layer and kind of content.
func seed(kind string, i int) [32]byte {
	var s [32]byte
	copy(s[:], fmt.Sprintf("berth-bench %s %d", kind, i))
	return s
}

// words make the text files: random sentences over a small vocabulary
// compress about 3:1 with gzip, like source code or configuration.
var words = []string{
	"container", "runtime", "sandbox", "image", "layer", "snapshot", "overlay", "mount",
	"network", "namespace", "cgroup", "memory", "cpu", "process", "signal", "exit",
	"kubelet", "pod", "node", "registry", "manifest", "digest", "config", "index",
	"pull", "push", "unpack", "extract", "whiteout", "opaque", "tar", "gzip",
	"the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "by", "at",
}

// textReader yields an endless stream of words.
type textReader struct {
	rng *rand.Rand
	buf []byte
}

func (t *textReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(t.buf) == 0 {
			for k := range 8 {
				t.buf = append(t.buf, words[t.rng.IntN(len(words))]...)
				if k == 7 {
					t.buf = append(t.buf, ".\n"...)
				} else {
					t.buf = append(t.buf, ' ')
				}
			}
		}
		c := copy(p[n:], t.buf)
		t.buf = t.buf[c:]
		n += c
	}
	return n, nil
}
