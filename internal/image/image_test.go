package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestUserFromConfig(t *testing.T) {
	uid := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		user     string
		wantUID  *int64
		wantName string
	}{
		{"", nil, ""},
		{"1002", uid(1002), ""},
		{"www-data", nil, "www-data"},
		{"1003:1004", uid(1003), ""},
		{"www-data:1004", nil, "www-data"},
		{"0", uid(0), ""},
		{":1004", nil, ""},
	} {
		gotUID, gotName := userFromConfig(tc.user)
		if !reflect.DeepEqual(gotUID, tc.wantUID) || gotName != tc.wantName {
			t.Errorf("userFromConfig(%q) = %v, %q; want %v, %q", tc.user, gotUID, gotName, tc.wantUID, tc.wantName)
		}
	}
}

func TestChainIDs(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	// The OCI image spec's definition, computed independently.
	h := func(s string) digest.Digest {
		sum := sha256.Sum256([]byte(s))
		return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
	}
	ab := h(string(a) + " " + string(b))
	abc := h(string(ab) + " " + string(c))
	for _, tc := range []struct {
		in, want []digest.Digest
	}{
		{nil, []digest.Digest{}},
		{[]digest.Digest{a}, []digest.Digest{a}},
		{[]digest.Digest{a, b, c}, []digest.Digest{a, ab, abc}},
	} {
		if got := chainIDs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("chainIDs(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func testRecord(config string, tags, digests []string) *Image {
	return &Image{
		ID:          digest.FromString(config),
		RepoTags:    tags,
		RepoDigests: digests,
		Size:        10,
		ChainIDs:    []digest.Digest{digest.FromString(config + "-layer")},
		PulledAt:    time.Now(),
	}
}

// Every way of naming an image finds the identical record, and removing it
// by any name removes every name.
func TestIndexLookupAndRemove(t *testing.T) {
	dir := t.TempDir()
	ix, err := loadIndex(dir, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	md := digest.FromString("manifest")
	img := testRecord("cfg", []string{"docker.io/library/busybox:latest", "quay.io/x/y:1"}, []string{"docker.io/library/busybox@" + md.String()})
	if _, err := ix.put(img, true); err != nil {
		t.Fatal(err)
	}
	names := []string{
		img.ID.String(), img.ID.Encoded(),
		"busybox", "busybox:latest", "docker.io/library/busybox:latest", "quay.io/x/y:1",
		"busybox@" + md.String(), "busybox:whatever@" + md.String(),
	}
	for _, n := range names {
		got, err := ix.get(n)
		if err != nil {
			t.Fatalf("get(%q): %v", n, err)
		}
		if !reflect.DeepEqual(got, ix.images[img.ID]) {
			t.Fatalf("get(%q) = %+v, not the canonical record", n, got)
		}
	}
	for _, n := range []string{"busybox:other", "quay.io/x/y:2", digest.FromString("x").String()} {
		if _, err := ix.get(n); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("get(%q) = %v, want not found", n, err)
		}
	}
	if _, err := ix.get("Not A Ref"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("get of a malformed ref = %v, want invalid argument", err)
	}

	// Persisted: a reload finds the same.
	ix2, err := loadIndex(dir, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ix2.get("quay.io/x/y:1"); err != nil || got.ID != img.ID {
		t.Fatalf("after reload: %v, %v", got, err)
	}

	if err := ix.remove(img.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := ix.get(n); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("get(%q) after remove = %v", n, err)
		}
	}
	ix3, err := loadIndex(dir, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if len(ix3.images) != 0 {
		t.Fatalf("removed record reloaded: %v", ix3.images)
	}
}

// A tag names one image: pulling it for another image moves it.
func TestIndexTagMoves(t *testing.T) {
	dir := t.TempDir()
	ix, err := loadIndex(dir, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	old := testRecord("old", []string{"docker.io/library/app:v1", "docker.io/library/app:stable"}, nil)
	nw := testRecord("new", []string{"docker.io/library/app:v1"}, nil)
	for _, img := range []*Image{old, nw} {
		if _, err := ix.put(img, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, ix := range []*index{ix, mustLoad(t, dir)} {
		if got, _ := ix.get("app:v1"); got == nil || got.ID != nw.ID {
			t.Fatalf("app:v1 = %v, want the new image", got)
		}
		if got := ix.images[old.ID]; !reflect.DeepEqual(got.RepoTags, []string{"docker.io/library/app:stable"}) {
			t.Fatalf("old image tags = %v", got.RepoTags)
		}
	}
}

func mustLoad(t *testing.T, dir string) *index {
	t.Helper()
	ix, err := loadIndex(dir, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
