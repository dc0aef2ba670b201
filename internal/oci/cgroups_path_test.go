package oci

import (
	"testing"

	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/errdefs"
)

func TestCgroupsPath(t *testing.T) {
	const pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"
	tests := []struct {
		driver           cgroupdriver.Driver
		parent, id, want string
		err              error
	}{
		// cgroupfs (and a Host built without a driver): today's paths.
		{"", "", "c1", "/berth/c1", nil},
		{cgroupdriver.Cgroupfs, "", "c1", "/berth/c1", nil},
		{cgroupdriver.Cgroupfs, "/kubepods/burstable/pod1", "c1", "/kubepods/burstable/pod1/c1", nil},
		{cgroupdriver.Cgroupfs, "kubepods/pod1/", "c1", "/kubepods/pod1/c1", nil},
		{cgroupdriver.Cgroupfs, "/../../etc", "c1", "/etc/c1", nil},
		{cgroupdriver.Cgroupfs, "/a\x00b", "c1", "", errdefs.ErrInvalidArgument},
		// systemd: a scope in the pod's slice, or in berth's own.
		{cgroupdriver.Systemd, pod, "c1", "kubepods-burstable-pod1234.slice:berth:c1", nil},
		{cgroupdriver.Systemd, "", "s1", "berth.slice:berth:s1", nil},
		{cgroupdriver.Systemd, "/kubepods/burstable/pod1", "c1", "", errdefs.ErrInvalidArgument},
		{cgroupdriver.Systemd, "/kubepods.slice/kubepods-burstable-pod1.slice", "c1", "", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, err := cgroupsPath(tt.driver, tt.parent, tt.id)
		if got != tt.want {
			t.Errorf("cgroupsPath(%q, %q) = %q, %v, want %q", tt.driver, tt.parent, got, err, tt.want)
		}
		checkErr(t, err, tt.err, "cgroup_parent")
	}
}

// TestSystemdSpecs checks that both spec builders take the driver from
// the Host and refuse, naming the field, a parent that is no slice.
func TestSystemdSpecs(t *testing.T) {
	const pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poduid_1.slice"
	in := testInput(t)
	in.Host.CgroupDriver = cgroupdriver.Systemd
	in.SandboxConfig.Linux.CgroupParent = pod
	res, err := ContainerSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Spec.Linux.CgroupsPath; got != "kubepods-besteffort-poduid_1.slice:berth:c1" {
		t.Errorf("container cgroupsPath %q", got)
	}
	sb := testSandboxInput(t)
	sb.Host.CgroupDriver = cgroupdriver.Systemd
	sb.Config.Linux.CgroupParent = pod
	s, err := SandboxSpec(sb)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Linux.CgroupsPath; got != "kubepods-besteffort-poduid_1.slice:berth:s1" {
		t.Errorf("sandbox cgroupsPath %q", got)
	}

	// kubelet left on cgroupfs sends a directory: refused before anything
	// is made, with the field named.
	in.SandboxConfig.Linux.CgroupParent = "/kubepods/besteffort/poduid-1"
	_, err = ContainerSpec(in)
	checkErr(t, err, errdefs.ErrInvalidArgument, "linux.cgroup_parent")
	sb.Config.Linux.CgroupParent = "/kubepods/besteffort/poduid-1"
	_, err = SandboxSpec(sb)
	checkErr(t, err, errdefs.ErrInvalidArgument, "linux.cgroup_parent")
}
