package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/fault"
	"github.com/berth-cri/berth/internal/image/reference"
	"github.com/berth-cri/berth/internal/registry"
)

// Layer blobs are never written to the content store: each is streamed from
// the registry straight into the decompressor and the snapshot, and both its
// compressed digest and its diff id are verified on the stream before the
// snapshot becomes visible. The snapshot is the only copy. containerd keeps
// the compressed blob as well, which doubles the disk used by every image
// and adds a full write and fsync to every pull, for uses berthd does not
// have (export, re-unpack into another snapshotter): a lost snapshot is
// simply fetched again. Image.Size still reports the compressed size from
// the manifest, as containerd does.

// ErrLayerMismatch is wrapped when a layer's bytes do not match its
// compressed digest or its diff id; nothing of it is kept.
var ErrLayerMismatch = errors.New("layer digest mismatch")

// unpackLayers makes every layer's snapshot present, in parallel. A layer
// whose snapshot exists moves no byte; a layer another pull is already
// fetching is waited for, not fetched twice.
func (s *Service) unpackLayers(ctx context.Context, ref reference.Ref, auth *registry.Auth, layers []ocispec.Descriptor, diffIDs, chains []digest.Digest) error {
	errs := make(chan error, len(layers))
	for i := range layers {
		go func() {
			errs <- s.ensureLayer(ctx, ref, auth, layers[i], diffIDs[i], chains[i])
		}()
	}
	var all []error
	for range layers {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	// One layer's error is enough; the others usually repeat its cause.
	if len(all) > 0 {
		return all[0]
	}
	return nil
}

// ensureLayer makes the snapshot chain present, sharing the work with any
// other pull of the same layer.
func (s *Service) ensureLayer(ctx context.Context, ref reference.Ref, auth *registry.Auth, desc ocispec.Descriptor, diffID, chain digest.Digest) error {
	if s.snapshots.Exists(chain) {
		return nil
	}
	_, _, err := s.layers.Do(ctx, chain.String(), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.fetchLayer(ctx, ref, auth, desc, diffID, chain)
	})
	if errors.Is(err, registry.ErrRegistryUnavailable) {
		// Already names the blob; kubelet needs the leading
		// "RegistryUnavailable" (see registry.ErrRegistryUnavailable).
		return err
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	return nil
}

// fetchLayer downloads and unpacks one layer. It holds a download slot
// while it runs and is cancelled when no byte arrives for the progress
// timeout.
func (s *Service) fetchLayer(ctx context.Context, ref reference.Ref, auth *registry.Auth, desc ocispec.Descriptor, diffID, chain digest.Digest) error {
	if s.snapshots.Exists(chain) { // finished by a run that ended just before
		return nil
	}
	if !desc.Digest.Algorithm().Available() || !diffID.Algorithm().Available() {
		return fmt.Errorf("unsupported digest algorithm: %w", errdefs.ErrInvalidArgument)
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	ctx, watch, stop := watchStall(ctx, s.timeoutOr(0), "download layer "+desc.Digest.String())
	defer stop()
	err := s.streamLayer(ctx, ref, auth, desc, diffID, chain, watch)
	return withCause(ctx, err)
}

func (s *Service) streamLayer(ctx context.Context, ref reference.Ref, auth *registry.Auth, desc ocispec.Descriptor, diffID, chain digest.Digest, watch *stallWatch) error {
	body, err := s.resolver.FetchBlob(ctx, ref, desc, auth)
	if err != nil {
		return err
	}
	// Both digests are computed in goroutines of their own (hashbehind.go).
	compressed := newHashBehind(desc.Digest.Algorithm())
	counter := &countWriter{}
	// Everything read from the body is hashed, whatever the decompressor
	// consumes, so the compressed digest covers every byte.
	raw := bufio.NewReaderSize(io.TeeReader(watch.reader(fault.Reader("image.mid-layer-download", body)), io.MultiWriter(compressed, counter)), 128<<10)
	tarStream, closeDecompressor, err := decompress(raw)
	if err != nil {
		body.Close()
		compressed.Stop()
		return err
	}
	uncompressed := newHashBehind(diffID.Algorithm())
	g := &guard{r: io.TeeReader(tarStream, uncompressed)}
	// Unpack returns as soon as ctx ends, while its extraction may still be
	// reading g or calling commit: closing the body unblocks a read, and the
	// guard keeps the decompressor and digesters from being used after that.
	defer func() {
		body.Close()
		g.close(func() {
			closeDecompressor()
			compressed.Stop()
			uncompressed.Stop()
		})
		// Every byte received counts, from a failed download too: the
		// metric is registry traffic. No read touches counter after close.
		s.metrics.ImagePullBytes(counter.n)
	}()

	return s.snapshots.Unpack(ctx, chain, g, func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed {
			return errGuardClosed
		}
		// The snapshot store read the tar to its end; drain what may follow
		// (tar padding, a compressed stream's trailer) so both digests cover
		// the whole layer.
		if _, err := io.Copy(io.Discard, g.r); err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if counter.n != desc.Size {
			return fmt.Errorf("got %d bytes, the manifest says %d: %w", counter.n, desc.Size, ErrLayerMismatch)
		}
		if got := compressed.Digest(); got != desc.Digest {
			return fmt.Errorf("content has digest %s: %w", got, ErrLayerMismatch)
		}
		if got := uncompressed.Digest(); got != diffID {
			return fmt.Errorf("uncompressed content has digest %s, the config says %s: %w", got, diffID, ErrLayerMismatch)
		}
		return nil
	})
}

var errGuardClosed = errors.New("layer download abandoned")

// guard serialises reads (and the commit check) with the release of the
// stream they use.
type guard struct {
	mu     sync.Mutex // held during every read and commit
	r      io.Reader
	closed bool
}

func (g *guard) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errGuardClosed
	}
	return g.r.Read(p)
}

func (g *guard) close(release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		release()
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// Magic numbers of the layer compressions the OCI spec allows.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress returns the tar stream inside r, detecting the compression
// from its first bytes rather than the media type (registries and tools
// are known to mislabel layers; the bytes cannot lie). The returned func
// releases the decompressor.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	head, err := r.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip layer: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd layer: %w", err)
		}
		return zr, zr.Close, nil
	default:
		return r, func() {}, nil
	}
}
