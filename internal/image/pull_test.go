package image

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

var amd64 = &ocispec.Platform{OS: "linux", Architecture: "amd64"}

func fixedPlatform(o *Options) { o.Platform = amd64 }

func TestPullByTag(t *testing.T) {
	reg := newTestRegistry(t)
	src := imageOf(t, "www-data:1004", layerOf(t, tarOf(t, map[string]string{"a": "1"}), "gzip"), layerOf(t, tarOf(t, map[string]string{"b": "2"}), "gzip"))
	reg.push(t, "app:v1", src)
	e := newTestEnv(t, reg, fixedPlatform)

	ref := reg.ref("app:v1")
	img := e.pull(t, ref)
	if img.ID.String() != configDigest(t, src) {
		t.Fatalf("id = %s, want the config digest %s", img.ID, configDigest(t, src))
	}
	if !reflect.DeepEqual(img.RepoTags, []string{ref}) {
		t.Errorf("tags = %v", img.RepoTags)
	}
	repoDigest := reg.ref("app@" + manifestDigest(t, src))
	if !reflect.DeepEqual(img.RepoDigests, []string{repoDigest}) {
		t.Errorf("digests = %v, want %s", img.RepoDigests, repoDigest)
	}
	if img.Size <= 0 || img.Username != "www-data" || img.UID != nil || len(img.ChainIDs) != 2 {
		t.Errorf("record = %+v", img)
	}
	if !reflect.DeepEqual(img.Spec.Config.Env, []string{"PATH=/bin"}) {
		t.Errorf("config env = %v", img.Spec.Config.Env)
	}
	for _, n := range []string{img.ID.String(), img.ID.Encoded(), ref, repoDigest} {
		got, err := e.svc.Get(n)
		if err != nil || !reflect.DeepEqual(got, img) {
			t.Fatalf("Get(%q) = %+v, %v; want the pulled record", n, got, err)
		}
	}
	if got := e.snapshots(t); got != 2 {
		t.Fatalf("%d snapshots, want 2", got)
	}

	// A re-pull moves no layer byte, and an id pulls what is present.
	gets := reg.layerGets(t, src)
	e.pull(t, ref)
	e.pull(t, img.ID.String())
	if got := reg.layerGets(t, src); got != gets {
		t.Fatalf("re-pull fetched layers: %d GETs, before %d", got, gets)
	}

	// A restart keeps it.
	before, _ := e.svc.Get(ref)
	e.reopen(t)
	got, err := e.svc.Get(ref)
	if err != nil || !sameJSON(t, got, before) {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	if e.snapshots(t) != 2 {
		t.Fatal("snapshots lost at restart")
	}
}

func TestPullByDigestAddsNoTag(t *testing.T) {
	reg := newTestRegistry(t)
	src := randomImage(t, 1)
	reg.push(t, "app:v1", src)
	e := newTestEnv(t, reg, fixedPlatform)
	ref := reg.ref("app@" + manifestDigest(t, src))
	img := e.pull(t, ref)
	if len(img.RepoTags) != 0 || !reflect.DeepEqual(img.RepoDigests, []string{ref}) {
		t.Fatalf("tags %v digests %v", img.RepoTags, img.RepoDigests)
	}
	if _, err := e.svc.Get(reg.ref("app:v1")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tag found after a pull by digest: %v", err)
	}
}

func TestPullIndexSelectsPlatform(t *testing.T) {
	reg := newTestRegistry(t)
	amd, arm := randomImage(t, 1), randomImage(t, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	reg.pushIndex(t, "multi:1", idx)
	armOnly := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	reg.pushIndex(t, "armonly:1", armOnly)
	e := newTestEnv(t, reg, fixedPlatform)

	img := e.pull(t, reg.ref("multi:1"))
	if img.ID.String() != configDigest(t, amd) {
		t.Fatalf("id = %s, want amd64's config %s", img.ID, configDigest(t, amd))
	}
	if want := reg.ref("multi@" + manifestDigest(t, idx)); !reflect.DeepEqual(img.RepoDigests, []string{want}) {
		t.Errorf("repo digests = %v, want the index digest %s", img.RepoDigests, want)
	}
	if n := reg.layerGets(t, arm); n != 0 {
		t.Errorf("arm64 layers fetched %d times", n)
	}

	_, err := e.svc.Pull(context.Background(), reg.ref("armonly:1"), nil, "")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "no matching manifest for linux/amd64") || !strings.Contains(err.Error(), "armonly:1") {
		t.Fatalf("pull of an arm64-only index: %v", err)
	}
}

func TestPullCompressions(t *testing.T) {
	reg := newTestRegistry(t)
	e := newTestEnv(t, reg, fixedPlatform)
	for _, comp := range []string{"gzip", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			file := "file-" + comp
			src := imageOf(t, "1002", layerOf(t, tarOf(t, map[string]string{file: comp}), comp))
			reg.push(t, "comp:"+comp, src)
			img := e.pull(t, reg.ref("comp:"+comp))
			if img.UID == nil || *img.UID != 1002 {
				t.Errorf("uid = %v", img.UID)
			}
			data, err := os.ReadFile(filepath.Join(e.snap.Mountpoint(), "layers", "sha256-"+img.ChainIDs[0].Encoded(), "diff", file))
			if err != nil || !strings.HasPrefix(string(data), comp) {
				t.Fatalf("unpacked file: %q, %v", data, err)
			}
		})
	}
}

// A layer whose bytes do not match its digest fails the pull and leaves no
// record, snapshot or blob.
func TestPullCorruptLayerLeavesNothing(t *testing.T) {
	reg := newTestRegistry(t)
	bad := layerOf(t, tarOf(t, map[string]string{"bad": "x"}), "none")
	src := imageOf(t, "", layerOf(t, tarOf(t, map[string]string{"good": "y"}), "gzip"), bad)
	reg.push(t, "corrupt:1", src)
	d, _ := bad.Digest()
	reg.setCorrupt(d)
	e := newTestEnv(t, reg, fixedPlatform)

	_, err := e.svc.Pull(context.Background(), reg.ref("corrupt:1"), nil, "")
	if !errors.Is(err, ErrLayerMismatch) || !strings.Contains(err.Error(), "corrupt:1") {
		t.Fatalf("pull: %v, want a layer mismatch naming the image", err)
	}
	if _, err := e.svc.Get(reg.ref("corrupt:1")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("record after failed pull: %v", err)
	}
	if s, b := e.snapshots(t), e.blobs(t); s != 0 || b != 0 {
		t.Fatalf("%d snapshots and %d blobs left", s, b)
	}
}

func TestRemoveFreesUnshared(t *testing.T) {
	reg := newTestRegistry(t)
	base := layerOf(t, tarOf(t, map[string]string{"base": "0"}), "gzip")
	a := imageOf(t, "", base, layerOf(t, tarOf(t, map[string]string{"a": "1"}), "gzip"))
	b := imageOf(t, "", base, layerOf(t, tarOf(t, map[string]string{"b": "2"}), "zstd"))
	reg.push(t, "a:1", a)
	reg.push(t, "a:2", a)
	reg.push(t, "b:1", b)
	e := newTestEnv(t, reg, fixedPlatform)
	imgA := e.pull(t, reg.ref("a:1"))
	e.pull(t, reg.ref("a:2"))
	imgB := e.pull(t, reg.ref("b:1"))
	if s := e.snapshots(t); s != 3 {
		t.Fatalf("%d snapshots, want 3 (shared base)", s)
	}

	if err := e.svc.Remove(reg.ref("a:2")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{reg.ref("a:1"), reg.ref("a:2"), imgA.ID.String(), imgA.RepoDigests[0]} {
		if _, err := e.svc.Get(n); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("Get(%s) after remove: %v", n, err)
		}
	}
	if s, bl := e.snapshots(t), e.blobs(t); s != 2 || bl != len(imgB.Blobs) {
		t.Fatalf("after removing a: %d snapshots, %d blobs; want 2, %d", s, bl, len(imgB.Blobs))
	}
	if err := e.svc.Remove(reg.ref("a:1")); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := e.svc.Remove(imgB.ID.Encoded()); err != nil {
		t.Fatal(err)
	}
	if s, bl := e.snapshots(t), e.blobs(t); s != 0 || bl != 0 {
		t.Fatalf("after removing all: %d snapshots, %d blobs", s, bl)
	}
	if imgs, _ := e.svc.List(""); len(imgs) != 0 {
		t.Fatalf("List = %v", imgs)
	}
}

// A removed image used by a container keeps its snapshots, across a
// restart, until the container releases it.
func TestUseKeepsSnapshotsUntilRelease(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "used:1", randomImage(t, 2))
	e := newTestEnv(t, reg, fixedPlatform)
	img := e.pull(t, reg.ref("used:1"))
	if _, err := e.svc.Use(reg.ref("used:1"), "ctr1"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(img.ID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(img.ID.String()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("removed image still visible: %v", err)
	}
	e.reopen(t)
	if s := e.snapshots(t); s != 2 {
		t.Fatalf("%d snapshots after restart, want 2", s)
	}
	if err := e.svc.Release(img.ID.String(), "ctr1"); err != nil {
		t.Fatal(err)
	}
	if s, b := e.snapshots(t), e.blobs(t); s != 0 || b != 0 {
		t.Fatalf("after release: %d snapshots, %d blobs", s, b)
	}
}

// Start-up drops a record whose snapshot is gone, or was published before a
// reboot with its files not yet flushed (snapshot's syncbehind.go), and
// frees what only it held: the image is pulled again, never run from
// missing or empty files.
func TestRestartDropsImageMissingALayer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, e *testEnv, img Image)
	}{
		{"snapshot removed", func(t *testing.T, e *testEnv, img Image) {
			if err := e.snap.Remove(img.ChainIDs[1]); err != nil {
				t.Fatal(err)
			}
		}},
		{"layer unflushed before a reboot", func(t *testing.T, e *testEnv, img Image) {
			e.snap.Flush()
			// The marker as an earlier boot left it (the snapshot store's layout).
			c := img.ChainIDs[0]
			marker := filepath.Join(e.root, "snapshots", "layers", c.Algorithm().String()+"-"+c.Encoded(), "unsynced")
			if err := os.WriteFile(marker, []byte("00000000-0000-0000-0000-000000000000 1"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.push(t, "broken:1", randomImage(t, 2))
			e := newTestEnv(t, reg, fixedPlatform)
			img := e.pull(t, reg.ref("broken:1"))
			tc.breakIt(t, e, img)
			e.reopen(t)
			if _, err := e.svc.Get(img.ID.String()); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("broken record kept: %v", err)
			}
			if s, b := e.snapshots(t), e.blobs(t); s != 0 || b != 0 {
				t.Fatalf("%d snapshots, %d blobs left", s, b)
			}
			if again := e.pull(t, reg.ref("broken:1")); again.ID != img.ID {
				t.Fatalf("pulled again as %s, want %s", again.ID, img.ID)
			}
		})
	}
}

// Two pulls of different images sharing a layer download it once.
func TestConcurrentPullsShareLayer(t *testing.T) {
	reg := newTestRegistry(t)
	base := layerOf(t, tarOf(t, map[string]string{"base": "0"}), "gzip")
	a := imageOf(t, "", base, layerOf(t, tarOf(t, map[string]string{"a": "1"}), "gzip"))
	b := imageOf(t, "", base, layerOf(t, tarOf(t, map[string]string{"b": "2"}), "gzip"))
	reg.push(t, "sa:1", a)
	reg.push(t, "sb:1", b)
	bd, _ := base.Digest()
	release := reg.setStall(bd)
	e := newTestEnv(t, reg, fixedPlatform)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, ref := range []string{"sa:1", "sb:1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Pull(context.Background(), reg.ref(ref), nil, "")
		}()
	}
	<-reg.started
	chain := digest.Digest(mustDiffID(t, base))
	testsupport.PollUntil(t, "both pulls wait for the shared layer", 10*time.Second, func() bool { return e.svc.layers.Waiters(chain.String()) == 2 })
	close(release)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.gets(bd); n != 1 {
		t.Fatalf("shared layer fetched %d times", n)
	}
}

// A cancelled caller stops waiting without killing the download another
// pull of the same image shares.
func TestCancelledPullKeepsSharedDownload(t *testing.T) {
	reg := newTestRegistry(t)
	layer := layerOf(t, tarOf(t, map[string]string{"big": "0"}), "gzip")
	reg.push(t, "shared:1", imageOf(t, "", layer))
	ld, _ := layer.Digest()
	release := reg.setStall(ld)
	e := newTestEnv(t, reg, fixedPlatform)

	ctx, cancel := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	errB := make(chan error, 1)
	go func() { _, err := e.svc.Pull(ctx, reg.ref("shared:1"), nil, ""); errA <- err }()
	go func() { _, err := e.svc.Pull(context.Background(), reg.ref("shared:1"), nil, ""); errB <- err }()
	<-reg.started
	testsupport.PollUntil(t, "both callers join the pull", 10*time.Second, func() bool { return e.svc.pulls.Waiters(reg.ref("shared:1")+"\x00\x00\x00") == 2 })
	cancel()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	close(release)
	if err := <-errB; err != nil {
		t.Fatalf("shared pull: %v", err)
	}
	if n := reg.gets(ld); n != 1 {
		t.Fatalf("layer fetched %d times", n)
	}
}

func TestPullProgressTimeout(t *testing.T) {
	reg := newTestRegistry(t)
	layer := layerOf(t, tarOf(t, map[string]string{"slow": "0"}), "gzip")
	reg.push(t, "slow:1", imageOf(t, "", layer))
	ld, _ := layer.Digest()
	reg.setStall(ld) // never released
	// Started with an hour, lowered as a SIGHUP reload does: the new value
	// must govern the next pull.
	e := newTestEnv(t, reg, func(o *Options) { fixedPlatform(o); o.PullProgressTimeout = time.Hour })
	e.svc.SetPullProgressTimeout(200 * time.Millisecond)
	_, err := e.svc.Pull(context.Background(), reg.ref("slow:1"), nil, "")
	if err == nil || !strings.Contains(err.Error(), "image_pull_progress_timeout") || !strings.Contains(err.Error(), "slow:1") {
		t.Fatalf("stalled pull: %v", err)
	}
	if s, b := e.snapshots(t), e.blobs(t); s != 0 || b != 0 {
		t.Fatalf("%d snapshots, %d blobs left", s, b)
	}
}

func TestPullErrors(t *testing.T) {
	reg := newTestRegistry(t)
	e := newTestEnv(t, reg, fixedPlatform)
	for _, tc := range []struct {
		ref    string
		check  func(error) bool
		prefix string
	}{
		{"127.0.0.1:1/nothing:here", func(err error) bool { return err != nil }, "RegistryUnavailable"},
		{reg.ref("missing:1"), func(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }, "pull image"},
		{"Bad Ref", func(err error) bool { return errors.Is(err, errdefs.ErrInvalidArgument) }, "pull image"},
		{digest.FromString("absent").String(), func(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }, "pull image"},
	} {
		_, err := e.svc.Pull(context.Background(), tc.ref, nil, "")
		if !tc.check(err) || !strings.HasPrefix(err.Error(), tc.prefix) || !strings.Contains(err.Error(), tc.ref) {
			t.Errorf("Pull(%q) = %v", tc.ref, err)
		}
	}
}

func TestPinnedAndHandler(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "pause:3.10", randomImage(t, 1))
	reg.push(t, "other:1", randomImage(t, 1))
	e := newTestEnv(t, reg, func(o *Options) { fixedPlatform(o); o.PinnedImages = []string{reg.ref("pause:3.10")} })
	if _, err := e.svc.Pull(context.Background(), reg.ref("pause:3.10"), nil, "runsc"); err != nil {
		t.Fatal(err)
	}
	e.pull(t, reg.ref("other:1"))
	imgs, err := e.svc.List("")
	if err != nil || len(imgs) != 2 {
		t.Fatalf("List = %v, %v", imgs, err)
	}
	for _, img := range imgs {
		pause := img.RepoTags[0] == reg.ref("pause:3.10")
		if img.Pinned != pause || (img.RuntimeHandler == "runsc") != pause {
			t.Errorf("%v: pinned %v handler %q", img.RepoTags, img.Pinned, img.RuntimeHandler)
		}
	}
	if got, err := e.svc.List(reg.ref("other:1")); err != nil || len(got) != 1 {
		t.Fatalf("filtered List = %v, %v", got, err)
	}
	if got, err := e.svc.List(reg.ref("other:2")); err != nil || len(got) != 0 {
		t.Fatalf("List of an absent image = %v, %v", got, err)
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return string(ja) == string(jb)
}

func mustDiffID(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestPullKeepsManifestAnnotations: the manifest's annotations (how a
// checkpoint image is told) are in the record, and survive a restart.
func TestPullKeepsManifestAnnotations(t *testing.T) {
	reg := newTestRegistry(t)
	ann := map[string]string{"io.kubernetes.cri-o.annotations.checkpoint.name": "counter"}
	src := mutate.Annotations(randomImage(t, 1), ann).(v1.Image)
	reg.push(t, "ckpt:1", src)
	e := newTestEnv(t, reg, fixedPlatform)
	if img := e.pull(t, reg.ref("ckpt:1")); !reflect.DeepEqual(img.Annotations, ann) {
		t.Fatalf("annotations = %v, want %v", img.Annotations, ann)
	}
	e.reopen(t)
	if img, err := e.svc.Get(reg.ref("ckpt:1")); err != nil || !reflect.DeepEqual(img.Annotations, ann) {
		t.Fatalf("after restart: %v, %v", img.Annotations, err)
	}
}
