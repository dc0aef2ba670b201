package runtimeinfo

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/testsupport"
)

func TestRecursiveReadOnlyFeature(t *testing.T) {
	const withRRO = `{"ociVersionMin":"1.0.0","mountOptions":["bind","rbind","ro","rro","rw"]}`
	const withoutRRO = `{"ociVersionMin":"1.0.0","mountOptions":["bind","rbind","ro","rw"]}`
	lib := configv1.Runtime{Type: configv1.RuntimeLibcontainer}
	oci := func(p string) configv1.Runtime { return configv1.Runtime{Type: configv1.RuntimeOCI, RuntimePath: p} }
	tests := []struct {
		name   string
		kernel bool
		rt     configv1.Runtime
		out    string
		err    error
		want   bool
	}{
		{"libcontainer on 5.12+", true, lib, "", nil, true},
		{"libcontainer on an old kernel", false, lib, "", nil, false},
		{"oci runtime listing rro", true, oci("/rt"), withRRO, nil, true},
		{"oci runtime listing rro, old kernel", false, oci("/rt"), withRRO, nil, false},
		{"oci runtime without rro", true, oci("/rt"), withoutRRO, nil, false},
		{"oci runtime without a features command", true, oci("/rt"), "", errors.New("exit status 1"), false},
		{"oci runtime printing garbage", true, oci("/rt"), "usage: ...", nil, false},
		{"unknown handler", true, configv1.Runtime{}, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			f := &features{kernelRRO: tt.kernel, ociRRO: map[string]bool{}, runFeatures: func(context.Context, string) ([]byte, error) {
				calls++
				return []byte(tt.out), tt.err
			}}
			for range 3 {
				if got := f.recursiveReadOnly(tt.rt); got != tt.want {
					t.Fatalf("recursiveReadOnly = %v, want %v", got, tt.want)
				}
			}
			if calls > 1 {
				t.Errorf("probed %d times, want once (cached per runtime)", calls)
			}
		})
	}
}

// A runtime binary not installed yet is asked again later, not remembered
// as lacking the feature.
func TestRecursiveReadOnlyMissingBinaryNotCached(t *testing.T) {
	calls := 0
	f := &features{kernelRRO: true, ociRRO: map[string]bool{}, runFeatures: func(context.Context, string) ([]byte, error) {
		calls++
		return nil, &exec.Error{Name: "/rt", Err: exec.ErrNotFound}
	}}
	rt := configv1.Runtime{Type: configv1.RuntimeOCI, RuntimePath: "/rt"}
	f.recursiveReadOnly(rt)
	f.recursiveReadOnly(rt)
	if calls != 2 {
		t.Errorf("probed %d times, want 2", calls)
	}
}

// The real probe, against the runc binary of this machine if it has one.
func TestRuntimeFeaturesRunc(t *testing.T) {
	path, err := exec.LookPath("runc")
	testsupport.Require(t, err == nil, "runc not installed (apt-get install runc)")
	f := newFeatures()
	if !f.kernelRRO {
		// skip: platform
		t.Skip("kernel older than 5.12")
	}
	// runc has applied "rro" since 1.1.
	if !f.recursiveReadOnly(configv1.Runtime{Type: configv1.RuntimeOCI, RuntimePath: path}) {
		t.Errorf("%s features does not list rro", path)
	}
}

// The probe asks the kernel: every kernel Berth supports (5.14+) has
// mount_setattr, this machine's too.
func TestHasMountSetattr(t *testing.T) {
	if !hasMountSetattr() {
		t.Errorf("mount_setattr not found on kernel %s", kernelRelease())
	}
}

// Status's verbose info gives the reason a feature is missing.
func TestKernelInfo(t *testing.T) {
	noIDMap := errors.New("user namespaces need overlayfs taking id-mapped layers as file descriptors (Linux 6.13+)")
	f := &features{kernel: "6.1.0-28-amd64", kernelRRO: true, idmapDirs: map[string]error{},
		probeIDMap: func(string) error { return noIDMap }}
	got := f.kernelInfo("/var/lib/berth")
	want := kernelInfo{Release: "6.1.0-28-amd64", RecursiveReadOnlyMounts: true, IDMappedRootfsError: noIDMap.Error()}
	if got != want {
		t.Errorf("kernelInfo = %+v, want %+v", got, want)
	}
}

func TestUserNamespacesFeature(t *testing.T) {
	const withIDMap = `{"linux":{"namespaces":["mount","user","network"],"mountExtensions":{"idmap":{"enabled":true}}}}`
	const idmapOff = `{"linux":{"namespaces":["mount","user"],"mountExtensions":{"idmap":{"enabled":false}}}}`
	const runc11 = `{"ociVersionMin":"1.0.0","mountOptions":["rro"]}` // no linux.mountExtensions
	lib := configv1.Runtime{Type: configv1.RuntimeLibcontainer}
	oci := configv1.Runtime{Type: configv1.RuntimeOCI, RuntimePath: "/rt"}
	noIDMap := errors.New("id-mapped overlay layers: invalid argument")
	tests := []struct {
		name     string
		rt       configv1.Runtime
		out      string
		probeErr error
		want     bool
	}{
		{"libcontainer, kernel id-maps the root dir", lib, "", nil, true},
		{"libcontainer, root dir cannot be id-mapped", lib, "", noIDMap, false},
		{"oci runtime with idmap", oci, withIDMap, nil, true},
		{"oci runtime with idmap, root dir cannot be id-mapped", oci, withIDMap, noIDMap, false},
		{"oci runtime with idmap disabled", oci, idmapOff, nil, false},
		{"oci runtime like runc 1.1", oci, runc11, nil, false},
		{"unknown handler", configv1.Runtime{}, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probes, runs := 0, 0
			f := &features{ociIDMap: map[string]bool{}, idmapDirs: map[string]error{},
				runFeatures: func(context.Context, string) ([]byte, error) { runs++; return []byte(tt.out), nil },
				probeIDMap:  func(string) error { probes++; return tt.probeErr },
			}
			for range 3 {
				if got := f.userNamespaces(tt.rt, "/var/lib/berth"); got != tt.want {
					t.Fatalf("userNamespaces = %v, want %v", got, tt.want)
				}
			}
			if probes > 1 || runs > 1 {
				t.Errorf("probed the dir %d and the runtime %d times, want at most once each", probes, runs)
			}
		})
	}
}
