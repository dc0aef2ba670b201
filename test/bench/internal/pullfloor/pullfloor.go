// Package pullfloor is the floor under a cold pull: the least work any
// runtime must do to turn an image in a registry into files on disk, done
// as plainly as possible. It reads each layer's blob from the registry
// (one request after the other, the manifest and config first),
// decompresses it on one core as it arrives, and writes its files, layer
// over layer, into one directory on the runtime's filesystem. No content
// store, no digest check, no snapshots, no fsync, no whiteouts (the
// benchmark's images have none): a runtime doing all that on the same
// bytes cannot be faster than this unless it uses more than one core.
package pullfloor

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
)

// Pull fetches ref and writes its layers' files under dir, which must not
// exist yet (its parent is made if need be). It returns the compressed
// bytes read.
func Pull(ctx context.Context, ref, dir string) (int64, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return 0, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	var total int64
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return total, fmt.Errorf("layer %d: %w", i, err)
		}
		n, err := unpack(rc, dir)
		rc.Close()
		total += n
		if err != nil {
			return total, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return total, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// unpack decompresses a gzipped tar from r and writes its directories and
// regular files under dir; it returns the compressed bytes read. Anything
// else (links, devices) is an error: the benchmark's images have none.
func unpack(r io.Reader, dir string) (int64, error) {
	cr := &countingReader{r: r}
	zr, err := gzip.NewReader(cr)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return cr.n, nil
		}
		if err != nil {
			return cr.n, err
		}
		path, err := within(dir, h.Name)
		if err != nil {
			return cr.n, err
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(path, mode); err != nil && !os.IsExist(err) {
				return cr.n, err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return cr.n, err
			}
			_, err = io.CopyBuffer(f, tr, buf)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return cr.n, err
			}
		default:
			return cr.n, fmt.Errorf("%s: tar entry type %q not supported by the floor", h.Name, h.Typeflag)
		}
	}
}

// within joins a tar entry's name to dir, refusing one that leaves it.
func within(dir, entry string) (string, error) {
	clean := filepath.Clean("/" + entry)
	if clean == "/" || strings.Contains(clean, "\x00") {
		return "", fmt.Errorf("tar entry %q: no file name", entry)
	}
	return filepath.Join(dir, clean), nil
}
