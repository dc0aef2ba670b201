// Package cdi injects Container Device Interface devices (CRI CDI_devices,
// and the older cdi.k8s.io/ annotations of device plugins) into a
// container's OCI spec, from the CDI spec files a device driver wrote into
// the configured spec directories.
package cdi

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Injector resolves CDI device names through a cache of the spec
// directories and applies their edits to OCI specs. It is safe for
// concurrent use.
//
// The cache refreshes by hand, on each injection that names a device, not
// through the library's file watcher: a watcher is a goroutine and inotify
// watches for the daemon's lifetime, for a feature few containers use, and
// it learns of a spec file a driver wrote just before CreateContainer only
// when its event arrives; a rescan of a few small files per such create is
// cheap and always sees what is on disk.
type Injector struct {
	// mu guards the fields below and serialises injections, so that a
	// change of directories cannot interleave with a refresh.
	mu    sync.Mutex
	cache *cdiapi.Cache
	dirs  []string
}

// New returns an injector; the spec directories are given with each Inject
// (they come from the live config).
func New() *Injector { return &Injector{} }

// Devices are the fully qualified CDI device names cfg asks for: its
// CDI_devices, then those of its cdi.k8s.io/ annotations, each once.
func Devices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	for i, d := range cfg.GetCDIDevices() {
		if d.GetName() == "" {
			return nil, fmt.Errorf("CDI_devices[%d]: the name is empty: %w", i, errdefs.ErrInvalidArgument)
		}
		out = append(out, d.GetName())
	}
	_, annotated, err := cdiapi.ParseAnnotations(cfg.GetAnnotations())
	if err != nil {
		return nil, fmt.Errorf("annotations %s*: %v: %w", cdiapi.AnnotationPrefix, err, errdefs.ErrInvalidArgument)
	}
	// ParseAnnotations walks a map: sort for a spec that does not change
	// from one create to the next.
	sort.Strings(annotated)
	for _, d := range annotated {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Inject applies the edits of devices (device nodes with their device
// cgroup rules, environment, mounts, hooks) from the CDI specs under dirs to
// spec. Nothing is read when devices is empty. A device no spec defines is
// ErrInvalidArgument naming it.
func (in *Injector) Inject(spec *specs.Spec, dirs, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cache == nil || !slices.Equal(in.dirs, dirs) {
		// NewCache scans the directories; its error is always nil.
		c, err := cdiapi.NewCache(cdiapi.WithAutoRefresh(false), cdiapi.WithSpecDirs(dirs...))
		if err != nil {
			return fmt.Errorf("CDI cache: %w", err)
		}
		in.cache, in.dirs = c, slices.Clone(dirs)
	} else {
		// A broken spec file is reported below only if it matters: it
		// must not block devices from the other files.
		_ = in.cache.Refresh()
	}
	unresolved, err := in.cache.InjectDevices(spec, devices...)
	if len(unresolved) > 0 {
		return fmt.Errorf("CDI devices %s are not defined by any spec in %s%s: %w",
			strings.Join(unresolved, ", "), strings.Join(dirs, ", "), specErrors(in.cache), errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return fmt.Errorf("inject CDI devices %s: %w", strings.Join(devices, ", "), err)
	}
	return nil
}

// specErrors describes the spec files the cache could not load, which may
// be why a device is missing.
func specErrors(c *cdiapi.Cache) string {
	all := c.GetErrors()
	if len(all) == 0 {
		return ""
	}
	var msgs []string
	for _, file := range slices.Sorted(maps.Keys(all)) {
		msgs = append(msgs, fmt.Sprintf("%s: %v", file, errors.Join(all[file]...)))
	}
	return " (specs that failed to load: " + strings.Join(msgs, "; ") + ")"
}
