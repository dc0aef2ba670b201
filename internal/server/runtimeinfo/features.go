package runtimeinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/snapshot"
)

// probeTimeout bounds `<runtime> features`: Status must answer even when a
// configured binary hangs.
const probeTimeout = 5 * time.Second

// features finds out what each handler's runtime really supports, once per
// runtime binary, asking the kernel rather than trusting its version:
// recursive read-only mounts need mount_setattr(2) (Linux 5.12) and, for an
// external runtime, one that applies the "rro" option. docs/kernel.md
// lists what needs which kernel.
type features struct {
	// kernel is the running kernel's release, for Status's verbose info.
	kernel string
	// kernelRRO reports whether the kernel has mount_setattr.
	kernelRRO bool
	// lowerdirPlus reports whether overlay takes lowerdir+ (Linux 6.8):
	// without it images of many layers mount through short paths
	// (internal/snapshot); only reported.
	lowerdirPlus bool
	// runFeatures runs `<path> features` (a fake in tests).
	runFeatures func(ctx context.Context, path string) ([]byte, error)

	// probeIDMap checks id-mapped mounts under a directory
	// (snapshot.ProbeIDMapped; a fake in tests).
	probeIDMap func(dir string) error

	// mu guards the fields below.
	mu sync.Mutex
	// ociRRO caches the answer per runtime binary of "oci" handlers.
	ociRRO map[string]bool
	// ociIDMap caches per runtime binary whether it makes id-mapped mounts.
	ociIDMap map[string]bool
	// idmapDirs caches per directory why id-mapped mounts do not work
	// there (nil: they work).
	idmapDirs map[string]error
}

// newFeatures probes the kernel, at berthd's start.
func newFeatures() *features {
	return &features{
		kernel: kernelRelease(), kernelRRO: hasMountSetattr(), lowerdirPlus: snapshot.ProbeLowerdirPlus(os.TempDir()),
		runFeatures: runtimeFeatures, probeIDMap: snapshot.ProbeIDMapped,
		ociRRO: map[string]bool{}, ociIDMap: map[string]bool{}, idmapDirs: map[string]error{},
	}
}

// hasMountSetattr asks the kernel whether it has mount_setattr(2), which
// recursive read-only mounts are made with (AT_RECURSIVE came with the call,
// in Linux 5.12), by a call that changes nothing: an empty change is
// answered before the path is even looked up.
func hasMountSetattr() bool {
	return unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{}) == nil
}

// recursiveReadOnly reports whether handler rt applies recursive
// read-only mounts. runc's libcontainer (in-process) does on any kernel
// with mount_setattr.
func (f *features) recursiveReadOnly(rt configv1.Runtime) bool {
	if !f.kernelRRO {
		return false
	}
	switch rt.Type {
	case configv1.RuntimeLibcontainer:
		return true
	case configv1.RuntimeOCI:
		return f.ociSupportsRRO(rt.RuntimePath)
	}
	return false
}

func (f *features) ociSupportsRRO(path string) bool {
	return f.ociFeature(f.ociRRO, path, listsRRO)
}

// ociFeature answers has(`path features`), cached in cache. The caller
// must not hold f.mu.
func (f *features) ociFeature(cache map[string]bool, path string, has func([]byte) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok, known := cache[path]; known {
		return ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := f.runFeatures(ctx, path)
	var missing *exec.Error
	if errors.As(err, &missing) {
		// Not installed (yet): ask again next time rather than remember.
		return false
	}
	ok := err == nil && has(out)
	cache[path] = ok
	return ok
}

// userNamespaces reports whether handler rt runs pods in user namespaces
// (CRI: user namespaces and id-mapped mounts both). berthd itself makes the
// rootfs (an overlay of id-mapped layers on rootDir's filesystem) and the
// pod's /dev/shm tmpfs, so the kernel must id-map those; the runtime makes
// the id-mapped bind mounts: libcontainer does, an external runtime only if
// its features say so (runc since 1.2; Debian 12's runc 1.1 ignores the
// mappings, which would leave volumes with garbage owners).
func (f *features) userNamespaces(rt configv1.Runtime, rootDir string) bool {
	switch rt.Type {
	case configv1.RuntimeLibcontainer:
	case configv1.RuntimeOCI:
		if !f.ociFeature(f.ociIDMap, rt.RuntimePath, listsIDMap) {
			return false
		}
	default:
		return false
	}
	return f.idmapWorks(rootDir)
}

// idmapWorks probes dir once and remembers the answer.
func (f *features) idmapWorks(dir string) bool {
	return f.idmapError(dir) == nil
}

// idmapError is why id-mapped mounts fail under dir, nil if they work;
// probed once.
func (f *features) idmapError(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, known := f.idmapDirs[dir]; known {
		return err
	}
	err := f.probeIDMap(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return err // not made yet: ask again
	}
	f.idmapDirs[dir] = err
	return err
}

// kernelInfo is what Status's verbose info says of the kernel: its release
// and what was found by probing it, with the reason where a feature is
// missing.
type kernelInfo struct {
	Release                 string `json:"release"`
	RecursiveReadOnlyMounts bool   `json:"recursiveReadOnlyMounts"`
	OverlayLowerdirPlus     bool   `json:"overlayLowerdirPlus"`
	IDMappedRootfs          bool   `json:"idmappedRootfs"`
	IDMappedRootfsError     string `json:"idmappedRootfsError,omitempty"`
}

func (f *features) kernelInfo(rootDir string) kernelInfo {
	k := kernelInfo{Release: f.kernel, RecursiveReadOnlyMounts: f.kernelRRO, OverlayLowerdirPlus: f.lowerdirPlus}
	err := f.idmapError(rootDir)
	k.IDMappedRootfs = err == nil
	if err != nil {
		k.IDMappedRootfsError = err.Error()
	}
	return k
}

// listsIDMap reads the OCI runtime features document (runtime-spec
// features-linux.md): user namespaces, and id-mapped mounts enabled.
func listsIDMap(doc []byte) bool {
	var feat struct {
		Linux struct {
			Namespaces      []string `json:"namespaces"`
			MountExtensions struct {
				IDMap struct {
					Enabled *bool `json:"enabled"`
				} `json:"idmap"`
			} `json:"mountExtensions"`
		} `json:"linux"`
	}
	if json.Unmarshal(doc, &feat) != nil {
		return false
	}
	e := feat.Linux.MountExtensions.IDMap.Enabled
	return e != nil && *e && slices.Contains(feat.Linux.Namespaces, "user")
}

// listsRRO reads the OCI runtime features document (runtime-spec
// features.md): "rro" among mountOptions.
func listsRRO(doc []byte) bool {
	var fs struct {
		MountOptions []string `json:"mountOptions"`
	}
	return json.Unmarshal(doc, &fs) == nil && slices.Contains(fs.MountOptions, "rro")
}

func runtimeFeatures(ctx context.Context, path string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, path, "features").Output()
	if err != nil {
		return nil, fmt.Errorf("%s features: %w", path, err)
	}
	return out, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
