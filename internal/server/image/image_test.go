package image

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/snapshot"
)

// newTestService serves an image service over a fresh root, with one image
// pushed to an in-process registry; it returns the image's reference.
func newTestService(t *testing.T) (*Service, string) {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/edge/app:v1"
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	res, err := registry.New(registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.Open(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snaps.Flush) // the layers' flush, as berthd's stop
	l := logrus.New()
	l.SetOutput(io.Discard)
	svc, err := image.New(image.Options{Root: root, Resolver: res, Snapshots: snaps, Log: l,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	return New(svc), ref
}

func spec(s string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: s} }

func TestImageRPCs(t *testing.T) {
	ctx := context.Background()
	s, ref := newTestService(t)

	// Absent: OK with no image, never an error.
	st, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(ref)})
	if err != nil || st.Image != nil {
		t.Fatalf("status of an absent image = %v, %v", st, err)
	}

	pulled, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref, RuntimeHandler: "h1"}, Auth: &runtimeapi.AuthConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	st, err = s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(ref), Verbose: true})
	if err != nil || st.Image == nil {
		t.Fatalf("status = %v, %v", st, err)
	}
	if st.Image.Id != pulled.ImageRef || st.Image.Size == 0 || st.Image.Spec.GetRuntimeHandler() != "h1" {
		t.Fatalf("image = %v, pulled %s", st.Image, pulled.ImageRef)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info["imageSpec"] == nil || info["chainID"] == nil {
		t.Fatalf("verbose info %q: %v", st.Info["info"], err)
	}
	for _, n := range []string{pulled.ImageRef, strings.TrimPrefix(pulled.ImageRef, "sha256:"), st.Image.RepoDigests[0]} {
		byN, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(n)})
		if err != nil || byN.Image.String() != st.Image.String() {
			t.Fatalf("status by %s = %v, %v", n, byN.Image, err)
		}
	}

	list, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: spec(pulled.ImageRef)}})
	if err != nil || len(list.Images) != 1 {
		t.Fatalf("filtered list = %v, %v", list, err)
	}

	fs, err := s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) == 0 {
		t.Fatalf("fs info = %v, %v", fs, err)
	}
	f := fs.ImageFilesystems[0]
	if f.Timestamp <= 0 || f.FsId.GetMountpoint() == "" || f.UsedBytes == nil || f.InodesUsed == nil || f.UsedBytes.Value == 0 {
		t.Fatalf("image filesystem = %v", f)
	}

	for i := 0; i < 2; i++ { // idempotent
		if _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(strings.TrimPrefix(pulled.ImageRef, "sha256:"))}); err != nil {
			t.Fatalf("remove #%d: %v", i, err)
		}
	}
	list, err = s.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Fatalf("list after remove = %v, %v", list, err)
	}
}

func TestImageRPCErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t)
	if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("Not Valid")}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("pull of a malformed ref: %v", err)
	}
	if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("pull without image: %v", err)
	}
	if _, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("status without image: %v", err)
	}
	_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("127.0.0.1:1/x:1")})
	if err == nil || errdefs.Code(err).String() != "Unknown" || !strings.HasPrefix(err.Error(), "RegistryUnavailable") {
		t.Errorf("pull from an unreachable registry: %v (code %v)", err, errdefs.Code(err))
	}
}

// Service provides every ImageService method: assembled with the
// Unimplemented server one level deeper (as the server assembly may do),
// none of them falls through to Unimplemented.
type unimplemented struct {
	runtimeapi.UnimplementedImageServiceServer
}
type assembled struct {
	unimplemented
	*Service
}

var _ runtimeapi.ImageServiceServer = assembled{}
