// Package archive applies OCI image layers (uncompressed tar streams) to an
// empty directory in overlayfs form: every layer becomes its own overlay lower
// dir, independent of its parents, so layers can be extracted in parallel.
//
// A layer is untrusted input. Nothing it contains may create or change a file
// outside the target directory, whatever mix of "..", absolute names,
// symlinks and hard links it uses; see resolve_linux.go for how.
package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Defaults for the Options limits: generous enough for any real image layer,
// small enough that one hostile layer cannot fill the disk unbounded.
const (
	DefaultMaxEntries = 1 << 21 // 2M tar headers
	DefaultMaxBytes   = 1 << 37 // 128 GiB of file contents
)

// Options tunes Apply. The zero value is the default policy.
type Options struct {
	// MaxEntries caps the number of tar headers; 0 means DefaultMaxEntries.
	MaxEntries int64
	// MaxBytes caps the total size of regular file contents; 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// NoDevices rejects character and block device entries. Whiteouts (0:0
	// character devices the applier makes itself) stay allowed.
	NoDevices bool
}

func (o Options) withDefaults() Options {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	return o
}

// Stats is what Apply wrote, for usage accounting.
type Stats struct {
	// Bytes is the apparent size of the regular file contents written.
	Bytes int64
	// Inodes counts the inodes created: files, directories (including
	// parents the tar did not list), symlinks, devices, fifos and whiteouts.
	// Hard links create none.
	Inodes int64
}

// Apply extracts the uncompressed tar layer read from r into dir, which must
// exist and should be empty, in overlayfs form:
//   - ".wh.<name>" becomes a 0:0 character device <name> (overlay whiteout);
//   - ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory;
//   - other ".wh..wh." names (AUFS metadata) are skipped, as docker does.
//
// Leading "/" in names is dropped as tar tools do; a ".." component anywhere
// in a name or hard link target, or a path whose resolution leaves dir (via a
// symlink the layer planted), fails the whole layer with
// errdefs.ErrInvalidArgument. Limits fail it with errdefs.ErrResourceExhausted.
// ctx is checked between entries. On error dir holds a partial layer: the
// caller discards it.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	opts = opts.withDefaults()
	a, err := newApplier(dir, opts)
	if err != nil {
		return Stats{}, err
	}
	defer a.close()

	tr := tar.NewReader(r)
	var entries int64
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("read layer tar: %w", err)
		}
		entries++
		if entries > opts.MaxEntries {
			return a.stats, fmt.Errorf("layer has more than %d entries: %w", opts.MaxEntries, errdefs.ErrResourceExhausted)
		}
		if err := a.apply(hdr, tr); err != nil {
			return a.stats, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finishDirTimes(); err != nil {
		return a.stats, err
	}
	return a.stats, nil
}
