package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// fakeBounding is this host's real shape: everything but CAP_SYS_RESOURCE.
func fakeBounding() []string {
	var caps []string
	for _, c := range capNames {
		if c != "CAP_SYS_RESOURCE" {
			caps = append(caps, c)
		}
	}
	return caps
}

// fakeHost mirrors the CI VM: cgroup v1 without hugetlb, memsw present,
// seccomp on, no AppArmor, oom_score_adj 0, two fake devices under /dev.
func fakeHost() Host {
	mode := os.FileMode(0o660)
	var zero uint32
	devs := map[string][]specs.LinuxDevice{
		"/dev/fuse":   {{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &zero, GID: &zero}},
		"/dev/sda":    {{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0, FileMode: &mode, UID: &zero, GID: &zero}},
		"/dev/dri":    {{Path: "/dev/dri/card0", Type: "c", Major: 226, Minor: 0}, {Path: "/dev/dri/renderD128", Type: "c", Major: 226, Minor: 128}},
		"/dev/kmsg":   {{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}},
		"/dev/random": {{Path: "/dev/random", Type: "c", Major: 1, Minor: 8}},
	}
	return Host{
		BoundingCaps:   fakeBounding(),
		CgroupV2:       false,
		Hugetlb:        false,
		SwapAccounting: true,
		SeccompEnabled: true,
		KernelRelease:  "6.1.0-18-amd64",
		Devices: func(p string) ([]specs.LinuxDevice, error) {
			if p == "/dev" {
				return append(append([]specs.LinuxDevice{}, devs["/dev/fuse"]...), devs["/dev/kmsg"]...), nil
			}
			d, ok := devs[p]
			if !ok {
				return nil, errdefs.ErrNotFound
			}
			return d, nil
		},
	}
}

const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh
broken line
other:x:2000:2001::/:/bin/sh
`
	testGroup = `root:x:0:
daemon:x:1:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:
staff:x:50:other
`
)

// rootfsFixture is a rootfs with /etc/passwd and /etc/group.
func rootfsFixture(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"passwd": testPasswd, "group": testGroup} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testPod is an ordinary pod: pod network and IPC, CONTAINER pid.
func testPod() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		Hostname: "web-0",
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/besteffort/poduid-1",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

func testImage() ocispec.ImageConfig {
	return ocispec.ImageConfig{
		Env:        []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"},
		Entrypoint: []string{"/entry"},
		Cmd:        []string{"serve"},
		WorkingDir: "/srv",
	}
}

// testInput is a valid container input; tests mutate copies of it.
func testInput(t testing.TB) ContainerInput {
	t.Helper()
	return ContainerInput{
		ID:            "c1",
		SandboxID:     "s1",
		Config:        &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}},
		SandboxConfig: testPod(),
		Namespaces: SandboxNamespaces{
			Net: "/run/berth/netns/s1", IPC: "/proc/1234/ns/ipc", UTS: "/proc/1234/ns/uts", PID: "/proc/1234/ns/pid",
		},
		PodFiles: PodFiles{
			Hosts: "/var/lib/berth/sandboxes/s1/hosts", ResolvConf: "/var/lib/berth/sandboxes/s1/resolv.conf",
			Hostname: "/var/lib/berth/sandboxes/s1/hostname", Shm: "/run/berth/sandboxes/s1/shm",
		},
		Image:  testImage(),
		Rootfs: rootfsFixture(t),
		Host:   fakeHost(),
	}
}

func secCtx(in *ContainerInput) *runtimeapi.LinuxContainerSecurityContext {
	if in.Config.Linux == nil {
		in.Config.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if in.Config.Linux.SecurityContext == nil {
		in.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	return in.Config.Linux.SecurityContext
}

// checkErr fails unless err matches want (nil = success expected) and, when
// set, its message contains substr.
func checkErr(t *testing.T, err, want error, substr string) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error = %v, want %v", err, want)
	case err != nil && substr != "" && !strings.Contains(err.Error(), substr):
		t.Fatalf("error %q does not name %q", err, substr)
	}
}

func i64(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
