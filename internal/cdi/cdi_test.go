package cdi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// writeSpec writes a CDI spec of vendor berth.test, class device, defining
// device name with a node at nodePath, an env var and a mount.
func writeSpec(t *testing.T, dir, file, name, nodePath, mountSrc string) {
	t.Helper()
	spec := fmt.Sprintf(`cdiVersion: "0.6.0"
kind: berth.test/device
devices:
  - name: %s
    containerEdits:
      deviceNodes:
        - path: /dev/berth-%s
          hostPath: %s
      env:
        - BERTH_DEVICE_%s=yes
containerEdits:
  env:
    - BERTH_VENDOR=berth
  mounts:
    - hostPath: %s
      containerPath: /opt/berth-%s
      options: [ro, bind]
`, name, name, nodePath, strings.ToUpper(name), mountSrc, name)
	if err := os.WriteFile(filepath.Join(dir, file), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mknodNull makes a character device with /dev/null's numbers (1:3).
func mknodNull(t *testing.T, p string) {
	t.Helper()
	err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	testsupport.Require(t, err == nil, "mknod needs CAP_MKNOD: %v", err)
}

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin"}},
		Linux:   &specs.Linux{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}},
	}
}

func TestInject(t *testing.T) {
	specDir, other, hostDir := t.TempDir(), t.TempDir(), t.TempDir()
	node := filepath.Join(hostDir, "null0")
	mknodNull(t, node)
	writeSpec(t, specDir, "berth.yaml", "gpu0", node, hostDir)
	dirs := []string{specDir, filepath.Join(other, "absent")}

	tests := []struct {
		name    string
		devices []string
		err     error
		substr  string
	}{
		{"known device", []string{"berth.test/device=gpu0"}, nil, ""},
		{"unknown device", []string{"berth.test/device=gpu0", "berth.test/device=gpu9"}, errdefs.ErrInvalidArgument, "berth.test/device=gpu9"},
		{"unqualified name", []string{"gpu0"}, errdefs.ErrInvalidArgument, `gpu0 are not defined`},
		{"nothing asked", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			err := New().Inject(spec, dirs, tt.devices)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.substr) {
					t.Fatalf("err = %v, want %v naming %q", err, tt.err, tt.substr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.devices) == 0 {
				if len(spec.Linux.Devices) != 0 || len(spec.Process.Env) != 1 {
					t.Errorf("spec changed with no device asked: %+v", spec)
				}
				return
			}
			if len(spec.Linux.Devices) != 1 {
				t.Fatalf("devices = %+v", spec.Linux.Devices)
			}
			d := spec.Linux.Devices[0]
			if d.Path != "/dev/berth-gpu0" || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
				t.Errorf("device = %+v, want c 1:3 at /dev/berth-gpu0", d)
			}
			rules := spec.Linux.Resources.Devices
			last := rules[len(rules)-1]
			if !last.Allow || last.Type != "c" || *last.Major != 1 || *last.Minor != 3 || last.Access != "rwm" {
				t.Errorf("device cgroup rules = %+v: the device is not allowed", rules)
			}
			for _, e := range []string{"PATH=/bin", "BERTH_VENDOR=berth", "BERTH_DEVICE_GPU0=yes"} {
				if !slices.Contains(spec.Process.Env, e) {
					t.Errorf("env %q lacks %s", spec.Process.Env, e)
				}
			}
			if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool {
				return m.Destination == "/opt/berth-gpu0" && m.Source == hostDir && slices.Contains(m.Options, "ro")
			}) {
				t.Errorf("mounts = %+v, want %s at /opt/berth-gpu0", spec.Mounts, hostDir)
			}
		})
	}
}

// A spec a driver writes after the first injection (a DRA driver prepares
// devices just before the container is created) is seen at once, and a
// change of the configured directories takes effect.
func TestInjectSeesNewSpecsAndDirs(t *testing.T) {
	first, second, hostDir := t.TempDir(), t.TempDir(), t.TempDir()
	node := filepath.Join(hostDir, "null0")
	mknodNull(t, node)
	in := New()
	if err := in.Inject(baseSpec(), []string{first}, []string{"berth.test/device=a"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("before the spec exists: err = %v", err)
	}
	writeSpec(t, first, "a.yaml", "a", node, hostDir)
	if err := in.Inject(baseSpec(), []string{first}, []string{"berth.test/device=a"}); err != nil {
		t.Fatalf("after the spec was written: %v", err)
	}
	writeSpec(t, second, "b.yaml", "b", node, hostDir)
	if err := in.Inject(baseSpec(), []string{second}, []string{"berth.test/device=a"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a from a directory no longer configured: err = %v", err)
	}
	if err := in.Inject(baseSpec(), []string{second}, []string{"berth.test/device=b"}); err != nil {
		t.Errorf("b: %v", err)
	}
}

func TestDevices(t *testing.T) {
	tests := []struct {
		name string
		cfg  *runtimeapi.ContainerConfig
		want []string
		err  error
	}{
		{"none", &runtimeapi.ContainerConfig{}, nil, nil},
		{"field then annotations, once each", &runtimeapi.ContainerConfig{
			CDIDevices: []*runtimeapi.CDIDevice{{Name: "v.com/c=b"}},
			Annotations: map[string]string{
				"cdi.k8s.io/plugin_2": "v.com/c=b,v.com/c=c",
				"cdi.k8s.io/plugin_1": "v.com/c=a",
				"other":               "x",
			},
		}, []string{"v.com/c=b", "v.com/c=a", "v.com/c=c"}, nil},
		{"bad annotation", &runtimeapi.ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/p": "not a name"}}, nil, errdefs.ErrInvalidArgument},
		{"empty name", &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{}}}, nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Devices(tt.cfg)
			if !errors.Is(err, tt.err) || tt.err == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Devices = %q, want %q", got, tt.want)
			}
		})
	}
}
