package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestCRIMounts(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	imageDir := t.TempDir()
	imageVolumes := map[string]string{"/data": imageDir}
	m := func(mod func(*runtimeapi.Mount)) *runtimeapi.Mount {
		x := &runtimeapi.Mount{ContainerPath: "/data", HostPath: dir}
		if mod != nil {
			mod(x)
		}
		return x
	}
	tests := []struct {
		name     string
		mount    *runtimeapi.Mount
		wantOpts []string
		wantSrc  string
		wantProp string
		err      error
		substr   string
	}{
		{"private rw", m(nil), []string{"rbind", "rprivate", "rw"}, dir, "", nil, ""},
		{"readonly", m(func(x *runtimeapi.Mount) { x.Readonly = true }), []string{"rbind", "rprivate", "ro"}, dir, "", nil, ""},
		{"host to container", m(func(x *runtimeapi.Mount) { x.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER }),
			[]string{"rbind", "rslave", "rw"}, dir, "rslave", nil, ""},
		{"bidirectional", m(func(x *runtimeapi.Mount) { x.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL }),
			[]string{"rbind", "rshared", "rw"}, dir, "rshared", nil, ""},
		{"recursive read-only", m(func(x *runtimeapi.Mount) { x.Readonly, x.RecursiveReadOnly = true, true }),
			[]string{"rbind", "rprivate", "ro", "rro"}, dir, "", nil, ""},
		{"rro without readonly", m(func(x *runtimeapi.Mount) { x.RecursiveReadOnly = true }), nil, "", "", errdefs.ErrInvalidArgument, "recursive_read_only"},
		{"rro with slave", m(func(x *runtimeapi.Mount) {
			x.Readonly, x.RecursiveReadOnly, x.Propagation = true, true, runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		}), nil, "", "", errdefs.ErrInvalidArgument, "recursive_read_only"},
		{"mount options", m(func(x *runtimeapi.Mount) { x.MountOptions = []string{"noexec", "nosuid", "nodev", "noexec"} }),
			[]string{"rbind", "rprivate", "rw", "noexec", "nosuid", "nodev"}, dir, "", nil, ""},
		{"unknown mount option", m(func(x *runtimeapi.Mount) { x.MountOptions = []string{"suid"} }), nil, "", "", errdefs.ErrInvalidArgument, "mount_options"},
		{"symlink followed", m(func(x *runtimeapi.Mount) { x.HostPath = link }), []string{"rbind", "rprivate", "rw"}, dir, "", nil, ""},
		{"selinux relabel ignored", m(func(x *runtimeapi.Mount) { x.SelinuxRelabel = true }), []string{"rbind", "rprivate", "rw"}, dir, "", nil, ""},
		{"missing host path", m(func(x *runtimeapi.Mount) { x.HostPath = "/nonexistent/berth" }), nil, "", "", errdefs.ErrNotFound, "/nonexistent/berth"},
		{"relative host path", m(func(x *runtimeapi.Mount) { x.HostPath = "rel" }), nil, "", "", errdefs.ErrInvalidArgument, "host_path"},
		{"relative container path", m(func(x *runtimeapi.Mount) { x.ContainerPath = "data" }), nil, "", "", errdefs.ErrInvalidArgument, "container_path"},
		{"unknown propagation", m(func(x *runtimeapi.Mount) { x.Propagation = 7 }), nil, "", "", errdefs.ErrInvalidArgument, "propagation"},
		{"image volume", m(func(x *runtimeapi.Mount) {
			x.HostPath, x.Image, x.Readonly = "", &runtimeapi.ImageSpec{Image: "sha256:abc"}, true
		}), []string{"rbind", "rprivate", "ro"}, imageDir, "", nil, ""},
		{"image volume, recursive read-only", m(func(x *runtimeapi.Mount) {
			x.HostPath, x.Image, x.Readonly, x.RecursiveReadOnly = "", &runtimeapi.ImageSpec{Image: "sha256:abc"}, true, true
		}), []string{"rbind", "rprivate", "ro", "rro"}, imageDir, "", nil, ""},
		{"image volume path not normal", m(func(x *runtimeapi.Mount) {
			x.ContainerPath, x.HostPath, x.Image, x.Readonly = "/data/", "", &runtimeapi.ImageSpec{Image: "sha256:abc"}, true
		}), []string{"rbind", "rprivate", "ro"}, imageDir, "", nil, ""},
		{"image volume read-write", m(func(x *runtimeapi.Mount) { x.HostPath, x.Image = "", &runtimeapi.ImageSpec{Image: "sha256:abc"} }),
			nil, "", "", errdefs.ErrInvalidArgument, "ImageVolumeMountFailed: mounts[0]: image volume"},
		{"image volume not prepared", m(func(x *runtimeapi.Mount) {
			x.ContainerPath, x.HostPath, x.Image, x.Readonly = "/elsewhere", "", &runtimeapi.ImageSpec{Image: "sha256:abc"}, true
		}), nil, "", "", errdefs.ErrFailedPrecondition, "ImageVolumeMountFailed: mounts[0]"},
		{"id-mapped outside a user namespace", m(func(x *runtimeapi.Mount) {
			x.UidMappings = []*runtimeapi.IDMapping{{Length: 1}}
			x.GidMappings = x.UidMappings
		}), nil, "", "", errdefs.ErrInvalidArgument, "need a pod user namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, prop, err := criMounts([]*runtimeapi.Mount{tt.mount}, imageVolumes, nil)
			checkErr(t, err, tt.err, tt.substr)
			if err != nil {
				return
			}
			if len(got) != 1 || got[0].Source != tt.wantSrc || got[0].Destination != "/data" || got[0].Type != "bind" || !slices.Equal(got[0].Options, tt.wantOpts) {
				t.Fatalf("mounts = %+v, want src %s opts %q", got, tt.wantSrc, tt.wantOpts)
			}
			if prop != tt.wantProp {
				t.Fatalf("rootfs propagation = %q, want %q", prop, tt.wantProp)
			}
		})
	}
}

func TestCRIMountsParentsFirst(t *testing.T) {
	dir := t.TempDir()
	got, _, err := criMounts([]*runtimeapi.Mount{
		{ContainerPath: "/a/b/c", HostPath: dir},
		{ContainerPath: "/a", HostPath: dir},
		{ContainerPath: "/x/y", HostPath: dir},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, m := range got {
		dsts = append(dsts, m.Destination)
	}
	if !slices.Equal(dsts, []string{"/a", "/x/y", "/a/b/c"}) {
		t.Fatalf("order = %q", dsts)
	}
}

func destinations(ms []specs.Mount) map[string]specs.Mount {
	out := map[string]specs.Mount{}
	for _, m := range ms {
		out[m.Destination] = m
	}
	return out
}

func TestContainerMounts(t *testing.T) {
	hostDir := t.TempDir()
	tests := []struct {
		name       string
		mod        func(*ContainerInput)
		wantSrc    map[string]string // destination -> source ("" = must be absent)
		wantOption map[string]string // destination -> one option it must carry
	}{
		{"pod files and standard mounts", nil,
			map[string]string{"/etc/hosts": "/var/lib/berth/sandboxes/s1/hosts", "/etc/resolv.conf": "/var/lib/berth/sandboxes/s1/resolv.conf",
				"/etc/hostname": "/var/lib/berth/sandboxes/s1/hostname", "/dev/shm": "/run/berth/sandboxes/s1/shm", "/proc": "proc", "/sys": "sysfs",
				"/sys/fs/cgroup": "cgroup", "/dev/mqueue": "mqueue", "/dev/pts": "devpts", "/dev": "tmpfs"},
			map[string]string{"/sys": "ro", "/sys/fs/cgroup": "ro", "/etc/hosts": "rw"}},
		{"CRI mounts replace runtime ones", func(in *ContainerInput) {
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/hosts", HostPath: hostDir}, {ContainerPath: "/dev/shm", HostPath: hostDir}}
		}, map[string]string{"/etc/hosts": hostDir, "/dev/shm": hostDir, "/etc/resolv.conf": "/var/lib/berth/sandboxes/s1/resolv.conf"}, nil},
		{"no pod shm: private tmpfs", func(in *ContainerInput) { in.PodFiles.Shm = "" }, map[string]string{"/dev/shm": "shm"}, map[string]string{"/dev/shm": "mode=1777"}},
		{"no pod files", func(in *ContainerInput) { in.PodFiles = PodFiles{Shm: "/s"} }, map[string]string{"/etc/hosts": "", "/etc/resolv.conf": ""}, nil},
		{"read-only rootfs: pod files ro", func(in *ContainerInput) { secCtx(in).ReadonlyRootfs = true }, nil, map[string]string{"/etc/hosts": "ro", "/etc/resolv.conf": "ro", "/dev/shm": "rw"}},
		{"image volumes beside host mounts", func(in *ContainerInput) {
			in.Config.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: hostDir},
				{ContainerPath: "/img", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}},
				{ContainerPath: "/img-etc/", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}, ImageSubPath: "etc"},
			}
			in.ImageVolumes = map[string]string{"/img": "/snap/c1-vol1/merged", "/img-etc": "/snap/c1-vol2/merged/etc"}
		}, map[string]string{"/data": hostDir, "/img": "/snap/c1-vol1/merged", "/img-etc": "/snap/c1-vol2/merged/etc"},
			map[string]string{"/img": "ro", "/img-etc": "ro", "/data": "rw"}},
		{"privileged: sysfs and cgroup rw", func(in *ContainerInput) {
			secCtx(in).Privileged = true
			in.SandboxConfig.Linux.SecurityContext.Privileged = true
		}, nil, map[string]string{"/sys": "rw", "/sys/fs/cgroup": "rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			if tt.mod != nil {
				tt.mod(&in)
			}
			res, err := ContainerSpec(in)
			if err != nil {
				t.Fatal(err)
			}
			got := destinations(res.Spec.Mounts)
			if len(got) != len(res.Spec.Mounts) {
				t.Fatalf("duplicate destinations in %+v", res.Spec.Mounts)
			}
			for dst, src := range tt.wantSrc {
				m, ok := got[dst]
				if src == "" {
					if ok {
						t.Errorf("%s mounted, want absent", dst)
					}
					continue
				}
				if !ok || m.Source != src {
					t.Errorf("%s: source %q (present %v), want %q", dst, m.Source, ok, src)
				}
			}
			for dst, opt := range tt.wantOption {
				if !slices.Contains(got[dst].Options, opt) {
					t.Errorf("%s options %q lack %q", dst, got[dst].Options, opt)
				}
			}
		})
	}
}

func TestImageVolumes(t *testing.T) {
	img := func(mod func(*runtimeapi.Mount)) *runtimeapi.Mount {
		x := &runtimeapi.Mount{ContainerPath: "/vol/", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}}
		if mod != nil {
			mod(x)
		}
		return x
	}
	tests := []struct {
		name   string
		mounts []*runtimeapi.Mount
		want   []ImageVolume
		err    error
		substr string
	}{
		{"none", []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/x"}}, nil, nil, ""},
		{"listed with their index", []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: "/x"},
			img(nil),
			img(func(x *runtimeapi.Mount) { x.ContainerPath, x.ImageSubPath = "/etc2", "etc/ssl" }),
		}, []ImageVolume{{1, "/vol", "sha256:abc", ""}, {2, "/etc2", "sha256:abc", "etc/ssl"}}, nil, ""},
		{"read-write refused", []*runtimeapi.Mount{img(func(x *runtimeapi.Mount) { x.Readonly = false })},
			nil, errdefs.ErrInvalidArgument, "must be readonly"},
		{"relative container path", []*runtimeapi.Mount{img(func(x *runtimeapi.Mount) { x.ContainerPath = "vol" })},
			nil, errdefs.ErrInvalidArgument, "container_path"},
		{"sub path escaping", []*runtimeapi.Mount{img(func(x *runtimeapi.Mount) { x.ImageSubPath = "etc/../../x" })},
			nil, errdefs.ErrInvalidArgument, "image_sub_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImageVolumes(tt.mounts)
			checkErr(t, err, tt.err, tt.substr)
			if err != nil {
				// CRI-CONTRACT.md: every image volume failure says so first.
				if !strings.HasPrefix(err.Error(), ImageVolumeMountFailed+": ") {
					t.Errorf("error %q does not start with %s", err, ImageVolumeMountFailed)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ImageVolumes = %+v, want %+v", got, tt.want)
			}
		})
	}
}
