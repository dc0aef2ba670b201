package integration

import (
	"context"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

func TestImageLifecycle(t *testing.T) {
	reg := harness.NewRegistry(t)
	img := reg.Push(t, "team/app", "v1", 3)
	digest, _ := img.Digest()
	cfgName, _ := img.ConfigName()
	d := harness.New(t, "")
	reg.Mirror(t, d, "registry.example.test")
	d.Start()
	ic := d.ImageClient()
	ctx := context.Background()
	d.WaitReady()

	// Through the mirror, by the public name kubelet would use.
	publicRef := "registry.example.test/team/app:v1"
	ref, err := ic.PullImage(ctx, &runtimeapi.ImageSpec{Image: publicRef}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "sha256:" + cfgName.Hex
	if ref != wantID {
		t.Errorf("image_ref %q, want the image id %q", ref, wantID)
	}
	layerGets := reg.BlobGets.Load()

	// Status by tag, id, bare hex and repo digest: one canonical record.
	repoDigest := "registry.example.test/team/app@" + digest.String()
	for _, q := range []string{publicRef, wantID, cfgName.Hex, repoDigest} {
		st, err := ic.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: q}, false)
		if err != nil {
			t.Fatalf("status %s: %v", q, err)
		}
		if st.Image == nil || st.Image.Id != wantID || st.Image.Size == 0 {
			t.Fatalf("status %s: %+v", q, st.Image)
		}
		if strings.Join(st.Image.RepoTags, ",") != publicRef || strings.Join(st.Image.RepoDigests, ",") != repoDigest {
			t.Errorf("status %s: tags %v digests %v", q, st.Image.RepoTags, st.Image.RepoDigests)
		}
	}
	// An absent image is OK with no image (else kubelet never pulls).
	st, err := ic.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: "registry.example.test/team/absent:v9"}, false)
	if err != nil || st.Image != nil {
		t.Errorf("absent image: %+v %v", st, err)
	}

	// Re-pull moves no layer bytes.
	if _, err := ic.PullImage(ctx, &runtimeapi.ImageSpec{Image: publicRef}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := reg.BlobGets.Load(); got != layerGets {
		t.Errorf("re-pull fetched %d more blobs", got-layerGets)
	}

	// By loopback address and by digest (which adds no tag).
	if _, err := ic.PullImage(ctx, &runtimeapi.ImageSpec{Image: reg.Host + "/team/app@" + digest.String()}, nil, nil); err != nil {
		t.Fatal(err)
	}
	list, err := ic.ListImages(ctx, nil)
	if err != nil || len(list) != 1 || len(list[0].RepoTags) != 1 || len(list[0].RepoDigests) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}

	fs, err := ic.ImageFsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 || fs.ImageFilesystems[0].FsId.GetMountpoint() == "" {
		t.Errorf("imagefsinfo %+v", fs)
	}

	// Remove by id removes every tag; again is fine.
	for i := 0; i < 2; i++ {
		if err := ic.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: wantID}); err != nil {
			t.Fatalf("remove #%d: %v", i, err)
		}
	}
	if list, _ := ic.ListImages(ctx, nil); len(list) != 0 {
		t.Errorf("images left after remove: %+v", list)
	}
}

func TestPullErrors(t *testing.T) {
	reg := harness.NewRegistry(t)
	d := harness.New(t, "")
	d.Start()
	ic := d.ImageClient()
	d.WaitReady()
	ctx := context.Background()
	for _, tc := range []struct {
		ref  string
		want string
	}{
		{reg.Host + "/nothing/here:v1", "not found"},
		{"team//app:1", "invalid"}, // malformed: never sent anywhere
		{"127.0.0.1:1/closed/port:v1", "RegistryUnavailable"},
	} {
		_, err := ic.PullImage(ctx, &runtimeapi.ImageSpec{Image: tc.ref}, nil, nil)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
			t.Errorf("pull %s: %v, want an error mentioning %q", tc.ref, err, tc.want)
		}
	}
}
