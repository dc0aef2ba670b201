package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestResolveUser(t *testing.T) {
	root := rootfsFixture(t)
	tests := []struct {
		name      string
		req       userRequest
		imageUser string
		want      User
		err       error
		substr    string
	}{
		{"image default root", userRequest{}, "", User{0, 0, []uint32{0, 10}}, nil, ""},
		{"image name merges groups", userRequest{}, "app", User{1000, 1000, []uint32{1000, 10, 29}}, nil, ""},
		{"image uid in passwd", userRequest{}, "1000", User{1000, 1000, []uint32{1000, 10, 29}}, nil, ""},
		{"image uid absent: gid 0", userRequest{}, "4242", User{4242, 0, []uint32{0}}, nil, ""},
		{"image uid:gid", userRequest{}, "1000:50", User{1000, 50, []uint32{50, 10, 29}}, nil, ""},
		{"image name:group", userRequest{}, "app:staff", User{1000, 50, []uint32{50, 10, 29}}, nil, ""},
		{"image uid:", userRequest{}, "2000:", User{2000, 2001, []uint32{2001, 50}}, nil, ""},
		{"image name missing", userRequest{}, "nobody", User{}, errdefs.ErrNotFound, "nobody"},
		{"image group missing", userRequest{}, "app:nogroup", User{}, errdefs.ErrNotFound, "nogroup"},
		{"run_as_user overrides image", userRequest{runAsUser: i64(1000)}, "root", User{1000, 1000, []uint32{1000, 10, 29}}, nil, ""},
		{"run_as_user absent from passwd", userRequest{runAsUser: i64(5000)}, "", User{5000, 0, []uint32{0}}, nil, ""},
		{"run_as_user + run_as_group", userRequest{runAsUser: i64(1000), runAsGroup: i64(7)}, "", User{1000, 7, []uint32{7, 10, 29}}, nil, ""},
		{"run_as_username", userRequest{runAsUsername: "other"}, "", User{2000, 2001, []uint32{2001, 50}}, nil, ""},
		{"run_as_username missing", userRequest{runAsUsername: "ghost"}, "", User{}, errdefs.ErrNotFound, "run_as_username"},
		{"run_as_group alone", userRequest{runAsGroup: i64(5)}, "app", User{}, errdefs.ErrInvalidArgument, "run_as_group"},
		{"both user and username", userRequest{runAsUser: i64(1), runAsUsername: "app"}, "", User{}, errdefs.ErrInvalidArgument, "run_as_username"},
		{"negative uid", userRequest{runAsUser: i64(-1)}, "", User{}, errdefs.ErrInvalidArgument, "run_as_user"},
		{"uid too large", userRequest{runAsUser: i64(1 << 32)}, "", User{}, errdefs.ErrInvalidArgument, "run_as_user"},
		{"supplemental merged", userRequest{runAsUser: i64(1000), supplemental: []int64{29, 3000}}, "", User{1000, 1000, []uint32{1000, 10, 29, 3000}}, nil, ""},
		{"strict: only primary + CRI", userRequest{runAsUser: i64(1000), supplemental: []int64{3000}, strict: true}, "", User{1000, 1000, []uint32{1000, 3000}}, nil, ""},
		{"bad supplemental", userRequest{supplemental: []int64{-5}}, "", User{}, errdefs.ErrInvalidArgument, "supplemental_groups[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveUser(RootfsFiles(root), tt.req, tt.imageUser)
			checkErr(t, err, tt.err, tt.substr)
			if err == nil && (got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids)) {
				t.Fatalf("user = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveUserWithoutEtc(t *testing.T) {
	root := t.TempDir() // distroless-like: no /etc at all
	u, err := resolveUser(RootfsFiles(root), userRequest{}, "65532:65532")
	if err != nil || u.UID != 65532 || u.GID != 65532 {
		t.Fatalf("got %+v, %v", u, err)
	}
	if _, err := resolveUser(RootfsFiles(root), userRequest{}, "nonroot"); !isNotFound(err) {
		t.Fatalf("named user without passwd: %v, want NotFound", err)
	}
}

// A symlinked /etc/passwd must resolve inside the rootfs, never on the host.
func TestResolveUserSymlinkStaysInRootfs(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "passwd"), []byte("evil:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(host, "passwd"), filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(RootfsFiles(root), userRequest{}, "evil"); !isNotFound(err) {
		t.Fatalf("user from a host file was resolved: %v", err)
	}
}

func TestContainerUserStatus(t *testing.T) {
	in := testInput(t)
	sc := secCtx(&in)
	sc.RunAsUsername = "app"
	sc.SupplementalGroups = []int64{4000}
	sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
	res, err := ContainerSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	cu := res.User.ContainerUser().GetLinux()
	if cu.GetUid() != 1000 || cu.GetGid() != 1000 || !slices.Equal(cu.GetSupplementalGroups(), []int64{1000, 4000}) {
		t.Fatalf("status user = %+v", cu)
	}
	if u := res.Spec.Process.User; u.UID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{1000, 4000}) {
		t.Fatalf("spec user = %+v", u)
	}
}

func isNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
