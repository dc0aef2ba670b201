package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// Issue 10: image volumes, recursive read-only mounts and CDI devices.

const volumeRepo = "test/volume:1"

// newPodEnvWith is newPodEnv with extra daemon config.
func newPodEnvWith(t *testing.T, name, extra string) *podEnv {
	t.Helper()
	return startPodEnv(t, name, extra, "")
}

// mountsUnder lists the mount points at or below dir in the host's mount
// table.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// createErr creates a container that must fail and returns the error.
func (e *podEnv) createErr(t *testing.T, cfg *runtimeapi.ContainerConfig) *status.Status {
	t.Helper()
	id, err := e.rt.CreateContainer(context.Background(), e.pod, cfg, e.podCfg)
	if err == nil {
		e.rt.RemoveContainer(context.Background(), id)
		t.Fatalf("create %s succeeded, want an error", cfg.Metadata.Name)
	}
	return status.Convert(err)
}

func TestImageVolumes(t *testing.T) {
	e := newPodEnv(t, "imgvol")
	ctx := context.Background()
	e.reg.PushImage(t, volumeRepo, []v1.Layer{harness.Layer(t, []harness.TarEntry{
		{Name: "data/", Dir: true, Mode: 0o755}, {Name: "data/sub/", Dir: true, Mode: 0o755},
		{Name: "data/hello.txt", Mode: 0o644, Body: []byte("hello from the image volume")},
		{Name: "data/sub/inner.txt", Mode: 0o644, Body: []byte("inner file")},
	})}, v1.Config{})
	volRef, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.reg.Host + "/" + volumeRepo}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	volumes := filepath.Join(e.d.Dir, "root", "snapshots", "volumes")
	imageMount := func(path, sub string) *runtimeapi.Mount {
		// As kubelet sends it: the id PullImage returned, read-only.
		return &runtimeapi.Mount{ContainerPath: path, Readonly: true, ImageSubPath: sub,
			Image: &runtimeapi.ImageSpec{Image: volRef, UserSpecifiedImage: e.reg.Host + "/" + volumeRepo}}
	}

	cfg := e.containerConfig("reader", "sh", "-c",
		"cat /vol/data/hello.txt; echo; cat /vol-sub/inner.txt; echo; touch /vol/new 2>&1; mkdir /vol-sub/d 2>&1; echo done")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/vol", ""), imageMount("/vol-sub", "data/sub")}
	id := e.run(t, cfg)
	st := e.waitExit(t, id)
	got := strings.Join(logLines(t, st.LogPath), "\n")
	for _, want := range []string{
		"stdout hello from the image volume", "stdout inner file",
		"touch: /vol/new: Read-only file system", "mkdir: can't create directory '/vol-sub/d': Read-only file system", "stdout done",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}
	// CRI-CONTRACT.md: each image volume's image_ref is the image id.
	if len(st.Mounts) != 2 {
		t.Fatalf("status mounts %v", st.Mounts)
	}
	for _, m := range st.Mounts {
		if m.GetImage().GetImageRef() != volRef || m.GetImage().GetImage() != volRef {
			t.Errorf("status mount %s: image %v, want image_ref %s", m.ContainerPath, m.GetImage(), volRef)
		}
	}
	if len(mountsUnder(t, volumes)) != 2 {
		t.Errorf("volume mounts %v, want 2", mountsUnder(t, volumes))
	}

	// Refusals, each leaving nothing mounted behind.
	for _, tc := range []struct {
		name  string
		mount *runtimeapi.Mount
		code  codes.Code
		names string
	}{
		{"read-write", func() *runtimeapi.Mount { m := imageMount("/vol", ""); m.Readonly = false; return m }(), codes.InvalidArgument, "readonly"},
		{"missing-sub-path", imageMount("/vol", "data/absent"), codes.InvalidArgument, "data/absent"},
		{"absent-image", func() *runtimeapi.Mount {
			m := imageMount("/vol", "")
			m.Image.Image = "sha256:" + strings.Repeat("0", 64)
			return m
		}(), codes.NotFound, "not present"},
	} {
		cfg := e.containerConfig(tc.name, "true")
		cfg.Mounts = []*runtimeapi.Mount{tc.mount}
		s := e.createErr(t, cfg)
		if s.Code() != tc.code || !strings.HasPrefix(s.Message(), "ImageVolumeMountFailed") || !strings.Contains(s.Message(), tc.names) {
			t.Errorf("%s: %v %q, want %v starting with ImageVolumeMountFailed and naming %q", tc.name, s.Code(), s.Message(), tc.code, tc.names)
		}
	}
	if len(mountsUnder(t, volumes)) != 2 {
		t.Errorf("failed creates left mounts: %v", mountsUnder(t, volumes))
	}

	// The container holds the image, across a restart of berthd too:
	// RemoveImage drops the record, the snapshots stay until the container
	// goes; then nothing is left.
	e.d.Stop()
	e.d.Start()
	e.d.WaitReady()
	e.rt, e.img = e.d.RuntimeClient(), e.d.ImageClient()
	if resp, err := e.rt.ContainerStatus(ctx, id, false); err != nil || resp.Status.Mounts[0].GetImage().GetImageRef() != volRef {
		t.Fatalf("status after restart: %v %v", resp, err)
	}
	if err := e.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: volRef}); err != nil {
		t.Fatal(err)
	}
	layers := filepath.Join(e.d.Dir, "root", "snapshots", "layers")
	before, _ := os.ReadDir(layers)
	if err := e.rt.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, volumes); len(m) != 0 {
		t.Errorf("after RemoveContainer, volume mounts remain: %v", m)
	}
	if left, _ := os.ReadDir(volumes); len(left) != 0 {
		t.Errorf("after RemoveContainer, volume snapshots remain: %v", left)
	}
	after, _ := os.ReadDir(layers)
	if len(after) != len(before)-1 {
		t.Errorf("layer snapshots %d -> %d: the removed volume image's layer was not freed with its last holder", len(before), len(after))
	}
}

// A recursive read-only mount makes its submounts read-only too; a plain
// read-only one does not.
func TestRecursiveReadOnlyMount(t *testing.T) {
	e := newPodEnv(t, "rro")
	ctx := context.Background()
	st, err := e.rt.Status(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() {
			t.Errorf("handler %q does not advertise recursive read-only mounts", h.Name)
		}
	}
	host := t.TempDir()
	sub := filepath.Join(host, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })

	cfg := e.containerConfig("writer", "sh", "-c",
		"touch /rro/sub/f 2>&1; echo rro=$?; touch /ro/sub/f && echo ro-submount-writable; touch /ro/f 2>&1")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/rro", HostPath: host, Readonly: true, RecursiveReadOnly: true},
		{ContainerPath: "/ro", HostPath: host, Readonly: true},
	}
	got := strings.Join(logLines(t, e.waitExit(t, e.run(t, cfg)).LogPath), "\n")
	for _, want := range []string{
		"touch: /rro/sub/f: Read-only file system", "stdout rro=1", "stdout ro-submount-writable", "touch: /ro/f: Read-only file system",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}
	bad := e.containerConfig("rro-rw", "true")
	bad.Mounts = []*runtimeapi.Mount{{ContainerPath: "/rro", HostPath: host, RecursiveReadOnly: true}}
	if s := e.createErr(t, bad); s.Code() != codes.InvalidArgument {
		t.Errorf("recursive_read_only without readonly: %v %q", s.Code(), s.Message())
	}
}

func TestCDIDevice(t *testing.T) {
	specDir, hostDir := t.TempDir(), t.TempDir()
	node := filepath.Join(hostDir, "null0")
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(hostDir, "shared")
	os.Mkdir(shared, 0o755)
	os.WriteFile(filepath.Join(shared, "firmware.bin"), []byte("fw"), 0o644)
	spec := fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": "berth.test/device",
 "devices": [{"name": "null0", "containerEdits": {
   "deviceNodes": [{"path": "/dev/berth-null", "hostPath": %q}],
   "env": ["BERTH_CDI_DEVICE=null0"]}}],
 "containerEdits": {"mounts": [{"hostPath": %q, "containerPath": "/opt/berth-cdi", "options": ["ro", "bind"]}]}}`, node, shared)
	if err := os.WriteFile(filepath.Join(specDir, "berth-test.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newPodEnvWith(t, "cdi", fmt.Sprintf("cdi_spec_dirs = [%q]\n", specDir))

	cfg := e.containerConfig("device", "sh", "-c",
		"ls -l /dev/berth-null; echo x > /dev/berth-null && echo wrote; echo BERTH_CDI_DEVICE=$BERTH_CDI_DEVICE; cat /opt/berth-cdi/firmware.bin; echo")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/device=null0"}}
	got := strings.Join(logLines(t, e.waitExit(t, e.run(t, cfg)).LogPath), "\n")
	for _, want := range []string{"1,   3", "stdout wrote", "stdout BERTH_CDI_DEVICE=null0", "stdout fw"} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}

	bad := e.containerConfig("unknown", "true")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/device=gpu7"}}
	if s := e.createErr(t, bad); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "berth.test/device=gpu7") {
		t.Errorf("unknown CDI device: %v %q", s.Code(), s.Message())
	}
}
