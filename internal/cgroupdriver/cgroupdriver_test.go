package cgroupdriver

import (
	"errors"
	"os"
	"testing"

	"github.com/opencontainers/cgroups/systemd"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestResolve(t *testing.T) {
	node := Host{SystemdPID1: true, CgroupV2: true}
	hybrid := Host{SystemdPID1: true}
	noSystemd := Host{CgroupV2: true}
	tests := []struct {
		configured string
		host       Host
		want       Driver
		unsup      bool
	}{
		{"auto", node, Systemd, false},
		{"", node, Systemd, false},
		{"auto", hybrid, Cgroupfs, false},
		{"auto", noSystemd, Cgroupfs, false},
		{"auto", Host{}, Cgroupfs, false},
		{"systemd", node, Systemd, false},
		{"systemd", hybrid, "", true},
		{"systemd", noSystemd, "", true},
		{"cgroupfs", node, Cgroupfs, false},
		{"cgroupfs", Host{}, Cgroupfs, false},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.configured, tt.host)
		if got != tt.want || errors.Is(err, ErrUnsupported) != tt.unsup || (err != nil) != tt.unsup {
			t.Errorf("Resolve(%q, %+v) = %q, %v; want %q (unsupported %v)", tt.configured, tt.host, got, err, tt.want, tt.unsup)
		}
	}
	if _, err := Resolve("systemd-ish", node); err == nil {
		t.Error("an unknown driver resolved")
	}
}

func TestExpandSlice(t *testing.T) {
	tests := []struct{ name, want string }{
		{"berth.slice", "/berth.slice"},
		{"kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice"},
		{"kubepods-burstable-pod1234_5678.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"},
		{"-.slice", "/"},
		{"", ""},
		{".slice", ""},
		{"kubepods", ""},
		{"a--b.slice", ""},
		{"-a.slice", ""},
		{"a-.slice", ""},
		{"a/b.slice", ""},
		{"system.slice.slice", "/system.slice.slice"},
	}
	for _, tt := range tests {
		got, err := check(t, "ExpandSlice", ExpandSlice, tt.name, tt.want)
		// The rule is systemd's; libcontainer's systemd manager puts the
		// scope where its own expansion says. They must agree.
		lib, libErr := systemd.ExpandSlice(tt.name)
		if lib != got || (libErr != nil) != (err != nil) {
			t.Errorf("ExpandSlice(%q) = %q, %v; opencontainers/cgroups says %q, %v", tt.name, got, err, lib, libErr)
		}
	}
}

func TestScopePath(t *testing.T) {
	const pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"
	tests := []struct {
		parent, id, want string
	}{
		{pod, "c1", "kubepods-burstable-pod1234.slice:berth:c1"},
		{pod + "/", "c1", "kubepods-burstable-pod1234.slice:berth:c1"},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab.slice", "s1", "kubepods-besteffort-podab.slice:berth:s1"},
		{"", "c1", "berth.slice:berth:c1"},
		{"kubepods-burstable-pod1234.slice", "c1", "kubepods-burstable-pod1234.slice:berth:c1"},
		{"/system.slice", "c1", "system.slice:berth:c1"},
		// Not slices: a cgroupfs parent, a slice in the wrong place, a
		// bad slice name, a path that only looks like one.
		{"/kubepods/burstable/pod1234", "c1", ""},
		{"/kubepods.slice/kubepods-burstable-pod1234.slice", "c1", ""},
		{"/other/kubepods-burstable.slice", "c1", ""},
		{"kubepods--x.slice", "c1", ""},
		{"/kubepods.slice/../kubepods.slice", "c1", "kubepods.slice:berth:c1"}, // cleaned, it is the slice
		{"kube\x00pods.slice", "c1", ""},
		{pod, "", ""},
		{pod, "a:b", ""},
	}
	for _, tt := range tests {
		got, err := ScopePath(tt.parent, tt.id)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("ScopePath(%q, %q) = %q, %v; want %q", tt.parent, tt.id, got, err, tt.want)
		}
	}
}

func TestDir(t *testing.T) {
	tests := []struct{ cgroupsPath, want string }{
		// cgroupfs paths are directories already.
		{"/berth/c1", "/berth/c1"},
		{"/kubepods/besteffort/pod1/c1", "/kubepods/besteffort/pod1/c1"},
		{"/kubepods//x/../c1", "/kubepods/c1"},
		// systemd scopes, as libcontainer's systemd manager names them.
		{"kubepods-burstable-pod1234.slice:berth:c1", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/berth-c1.scope"},
		{"berth.slice:berth:s1", "/berth.slice/berth-s1.scope"},
		{":berth:c1", "/system.slice/berth-c1.scope"},
		{"machine.slice:x:y.slice", "/machine.slice/y.slice"},
		// Neither.
		{"", ""},
		{"relative/path", ""},
		{"bad--slice.slice:berth:c1", ""},
		{"berth.slice:berth:", ""},
		{"berth.slice:berth:a/b", ""},
	}
	for _, tt := range tests {
		check(t, "Dir", Dir, tt.cgroupsPath, tt.want)
	}
	// What ScopePath builds, Dir finds below the parent kubelet named.
	const pod = "/kubepods.slice/kubepods-pod9.slice"
	p, err := ScopePath(pod, "abc")
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Dir(p); err != nil || d != pod+"/berth-abc.scope" {
		t.Errorf("Dir(ScopePath(%q)) = %q, %v", pod, d, err)
	}
}

// TestProbe checks the probe against the node the test runs on: this
// host (no systemd, cgroup v1) and the test VM (systemd, cgroup v2) both.
func TestProbe(t *testing.T) {
	h := Probe()
	comm, err := os.ReadFile("/proc/1/comm")
	testsupport.Require(t, err == nil, "read PID 1's name: %v", err)
	if isSystemd := string(comm) == "systemd\n"; h.SystemdPID1 != isSystemd {
		t.Errorf("Probe().SystemdPID1 = %v, PID 1 is %q", h.SystemdPID1, comm)
	}
	_, err = os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if h.CgroupV2 != (err == nil) {
		t.Errorf("Probe().CgroupV2 = %v, /sys/fs/cgroup/cgroup.controllers: %v", h.CgroupV2, err)
	}
}

// check calls f(in) and wants want, or an error where want is "".
func check(t *testing.T, name string, f func(string) (string, error), in, want string) (string, error) {
	t.Helper()
	got, err := f(in)
	if got != want || (err != nil) != (want == "") {
		t.Errorf("%s(%q) = %q, %v; want %q", name, in, got, err, want)
	}
	return got, err
}
