package config

import (
	"fmt"
	"path/filepath"
	"strings"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/oci"
)

// A RuntimeClass handler is resolved here, where the handlers are
// configured, for the sandbox and container managers alike.

// Handler is a resolved RuntimeClass handler.
type Handler struct {
	Name    string // the configured name it resolved to
	Runtime configv1.Runtime
}

// ResolveHandler maps the CRI runtime_handler ("" = default) to its
// configuration; an unknown one is InvalidArgument listing the known ones.
func ResolveHandler(cfg *configv1.Config, requested string) (Handler, error) {
	name := requested
	if name == "" {
		name = cfg.DefaultRuntime
	}
	rt, ok := cfg.Runtimes[name]
	if !ok {
		return Handler{}, fmt.Errorf("runtime handler %q is not configured (configured: %s): %w",
			requested, strings.Join(HandlerNames(cfg), ", "), errdefs.ErrInvalidArgument)
	}
	return Handler{Name: name, Runtime: rt}, nil
}

// SupervisorRuntime is how the supervisor runs containers of handler h.
func SupervisorRuntime(h Handler, stateDir string) (kind supv1.RuntimeKind, path, root string) {
	root = h.Runtime.RuntimeRoot
	if root == "" {
		root = filepath.Join(stateDir, "runtimes", h.Name)
	}
	if h.Runtime.Type == configv1.RuntimeOCI {
		return supv1.RuntimeOCI, h.Runtime.RuntimePath, root
	}
	return supv1.RuntimeLibcontainer, "", root
}

// OCIHandler is the part of a handler's options that shape specs.
func OCIHandler(h Handler) oci.Handler {
	return oci.Handler{
		PrivilegedWithoutHostDevices: h.Runtime.PrivilegedWithoutHostDevices,
		AllowedAnnotations:           h.Runtime.AllowedAnnotations,
	}
}
