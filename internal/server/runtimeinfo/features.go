package runtimeinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	configv1 "github.com/berth-cri/berth/api/config/v1"
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

	// mu guards the field below.
	mu sync.Mutex
	// ociRRO caches the answer per runtime binary of "oci" handlers.
	ociRRO map[string]bool
}

func newFeatures() *features {
	return &features{kernelRRO: kernelAtLeast(5, 12), runFeatures: runtimeFeatures, ociRRO: map[string]bool{}}
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
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok, known := f.ociRRO[path]; known {
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
	ok := err == nil && listsRRO(out)
	f.ociRRO[path] = ok
	return ok
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
