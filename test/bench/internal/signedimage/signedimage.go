// Package signedimage makes the image-policy workload's image and signs it
// with a key generated for the run, as cosign's tag scheme does, through
// the project's test signing helpers (internal/imagepolicy/sigtest).
package signedimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
)

// ExtraSize is the seeded random file added to the base image's files, so
// that the image shares no layer with the base (a cold pull stays cold
// when the base image is on the node) and its download is not trivial.
const ExtraSize = 4 << 20

// Push builds the image (base's files, flattened into one layer, plus
// ExtraSize random bytes; the same bytes at every run) and pushes it to
// each of refs, with a label naming the ref: one layer, but a distinct
// image (manifest and image id) per ref. It returns the manifest digests,
// in the order of refs.
func Push(ctx context.Context, base string, refs ...string) ([]digest.Digest, error) {
	br, err := name.ParseReference(base)
	if err != nil {
		return nil, err
	}
	plat := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	bimg, err := remote.Image(br, remote.WithContext(ctx), remote.WithPlatform(plat))
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", base, err)
	}
	layer, err := flattenWithExtra(bimg)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	bcf, err := bimg.ConfigFile()
	if err != nil {
		return nil, err
	}
	var ds []digest.Digest
	for _, ref := range refs {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.Architecture, cf.OS, cf.Config = plat.Architecture, plat.OS, *bcf.Config.DeepCopy()
		cf.Config.Labels = map[string]string{"berth-bench.image": ref}
		labelled, err := mutate.ConfigFile(img, cf)
		if err != nil {
			return nil, err
		}
		if err := remote.Write(r, labelled, remote.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
		d, err := labelled.Digest()
		if err != nil {
			return nil, err
		}
		ds = append(ds, digest.Digest(d.String()))
	}
	return ds, nil
}

// flattenWithExtra is base's filesystem as one layer, with the extra file.
func flattenWithExtra(base v1.Image) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rc := mutate.Extract(base)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("base image files: %w", err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	extra := make([]byte, ExtraSize)
	r := rand.New(rand.NewPCG(21, 21))
	for i := 0; i+8 <= len(extra); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			extra[i+j] = byte(v >> (8 * j))
		}
	}
	h := &tar.Header{Name: "berth-bench-policy", Mode: 0o644, Size: int64(len(extra)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	if _, err := tw.Write(extra); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Sign generates an ECDSA P-256 key, writes its public half to
// dir/keyName, and pushes the cosign tag (sha256-<hex>.sig) signing
// manifest d of repo (a repository of registry host, e.g.
// "berth-bench/policy-signed"), replacing any tag an earlier run pushed.
func Sign(host, repo string, d digest.Digest, dir, keyName string) (pubPath string, err error) {
	err = run(func(t testing.TB) {
		k := sigtest.NewKey(t, "ecdsa")
		pubPath = k.WritePub(t, dir, keyName)
		payload := sigtest.Payload(host+"/"+repo, d)
		sigtest.Registry{Host: host}.PushCosignTag(t, repo, d, payload, k.Sign(t, payload))
	})
	return pubPath, err
}

// tb lets sigtest's helpers, written for tests, run in the benchmark: a
// Fatal ends fn with an error. Embedding testing.TB (nil) supplies the
// interface's unexported method; sigtest calls only the methods below.
type tb struct{ testing.TB }

type fatal struct{ msg string }

func (tb) Helper()                        {}
func (tb) Fatal(args ...any)              { panic(fatal{fmt.Sprint(args...)}) }
func (tb) Fatalf(format string, a ...any) { panic(fatal{fmt.Sprintf(format, a...)}) }

// run calls fn with a tb and turns a Fatal (or any other panic, such as a
// call of a method tb lacks) into an error.
func run(fn func(testing.TB)) (err error) {
	defer func() {
		switch p := recover().(type) {
		case nil:
		case fatal:
			err = fmt.Errorf("signing: %s", p.msg)
		default:
			err = fmt.Errorf("signing: %v", p)
		}
	}()
	fn(tb{})
	return nil
}

// Copy pushes src's image for this machine's platform to dst as it is.
func Copy(ctx context.Context, src, dst string) error {
	sr, err := name.ParseReference(src)
	if err != nil {
		return err
	}
	dr, err := name.ParseReference(dst)
	if err != nil {
		return err
	}
	img, err := remote.Image(sr, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return fmt.Errorf("image %s: %w", src, err)
	}
	if err := remote.Write(dr, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", dst, err)
	}
	return nil
}
