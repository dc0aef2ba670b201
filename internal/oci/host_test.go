package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestParseCapBnd(t *testing.T) {
	// This VM's mask: every capability up to 40 except CAP_SYS_RESOURCE (24).
	caps, err := parseCapBnd([]byte("Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(caps) != 40 || slices.Contains(caps, "CAP_SYS_RESOURCE") || !slices.Contains(caps, "CAP_CHECKPOINT_RESTORE") {
		t.Fatalf("caps = %q", caps)
	}
	if _, err := parseCapBnd([]byte("CapBnd:\tzz\n")); err == nil {
		t.Fatal("bad mask accepted")
	}
	if _, err := parseCapBnd([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing line accepted")
	}
}

func TestProbeHost(t *testing.T) {
	h, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.BoundingCaps) == 0 || h.Devices == nil {
		t.Fatalf("host = %+v", h)
	}
}

func TestProbeCgroupV2(t *testing.T) {
	type file struct{ path, data string }
	tests := []struct {
		name        string
		files       []file
		controllers []string
		swap        bool
	}{
		// The guest's (Debian 12, systemd): hugetlb offered though systemd
		// does not enable it in any subtree_control.
		{"systemd host with swap", []file{
			{"cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n"},
			{"cgroup.subtree_control", "cpuset cpu io memory pids\n"},
			{"system.slice/memory.max", "max\n"},
			{"system.slice/memory.swap.max", "max\n"},
		}, []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}, true},
		{"swapaccount=0", []file{
			{"cgroup.controllers", "cpu io memory pids\n"},
			{"init.scope/memory.max", "max\n"},
		}, []string{"cpu", "io", "memory", "pids"}, false},
		{"no child with memory yet", []file{{"cgroup.controllers", "cpu memory pids\n"}}, []string{"cpu", "memory", "pids"}, true},
		{"no memory controller", []file{{"cgroup.controllers", "cpu pids\n"}}, []string{"cpu", "pids"}, false},
		{"controller-less hierarchy", []file{{"cgroup.controllers", ""}}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f.path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, swap, err := probeCgroupV2(root)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.controllers) || swap != tt.swap {
				t.Errorf("controllers %q swap %v, want %q %v", got, swap, tt.controllers, tt.swap)
			}
		})
	}
	if _, _, err := probeCgroupV2(t.TempDir()); err == nil {
		t.Error("no cgroup.controllers: no error")
	}
}

func TestHostDevices(t *testing.T) {
	d, err := HostDevices("/dev/null")
	if err != nil || len(d) != 1 || d[0].Type != "c" || d[0].Major != 1 || d[0].Minor != 3 {
		t.Fatalf("/dev/null = %+v, %v", d, err)
	}
	if _, err := HostDevices("/dev/berth-nonexistent"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
	if _, err := HostDevices("/etc/hostname"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("regular file: %v", err)
	}
	all, err := HostDevices("/dev")
	if err != nil || len(all) == 0 {
		t.Fatalf("/dev: %d devices, %v", len(all), err)
	}
	for _, d := range all {
		if d.Path == "/dev/console" || d.Path == "/dev/pts/ptmx" {
			t.Errorf("%s must not be copied from the host", d.Path)
		}
	}
}
