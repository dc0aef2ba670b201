package runtimeinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"strconv"
	"strings"
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
// runtime binary: recursive read-only mounts need mount_setattr(2) (Linux
// 5.12) and, for an external runtime, one that applies the "rro" option.
type features struct {
	// kernelRRO reports whether the kernel has mount_setattr.
	kernelRRO bool
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
	// idmapDirs caches per directory whether id-mapped mounts work there.
	idmapDirs map[string]bool
}

func newFeatures() *features {
	return &features{
		kernelRRO: kernelAtLeast(5, 12), runFeatures: runtimeFeatures, probeIDMap: snapshot.ProbeIDMapped,
		ociRRO: map[string]bool{}, ociIDMap: map[string]bool{}, idmapDirs: map[string]bool{},
	}
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
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok, known := f.idmapDirs[dir]; known {
		return ok
	}
	err := f.probeIDMap(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false // not made yet: ask again
	}
	f.idmapDirs[dir] = err == nil
	return err == nil
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

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	kmaj, kmin, ok := parseKernelRelease(unix.ByteSliceToString(u.Release[:]))
	return ok && (kmaj > major || kmaj == major && kmin >= minor)
}

// parseKernelRelease reads "6.18.44-fc-v657" as 6, 18.
func parseKernelRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits >= 0 {
		parts[1] = parts[1][:digits]
	}
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}
