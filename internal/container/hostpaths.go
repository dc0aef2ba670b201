package container

import (
	"fmt"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ownPaths are berthd's own directories (root_dir, state_dir), which no
// CRI mount may expose, and the CRI socket, the one path below them a
// mount may name. All are resolved through symlinks.
type ownPaths struct {
	dirs   []string
	socket string
}

func (m *Manager) ownPaths() ownPaths {
	return ownPaths{
		dirs:   []string{realPath(m.d.RootDir), realPath(m.d.StateDir)},
		socket: realPath(m.d.Config.Get().Listen),
	}
}

// realPath resolves p's symlinks; a path that cannot be resolved (not
// there yet) is only cleaned.
func realPath(p string) string {
	if p == "" {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// checkHostPaths refuses a CRI mount whose host_path, symlinks resolved,
// is one of berthd's own directories or below one: its records, bundles,
// snapshots and the supervisor's socket would be open to the container
// (docs/architecture.md, Hostile input). A parent of them stays allowed,
// "/" included: privileged debug pods mount the host's root, and the admin
// who allows such a hostPath already hands out the node. So does the CRI
// socket itself, which node agents mount. oci.ContainerSpec resolves the
// path again for the spec: a swap between the two needs write access to
// the node's own directories.
func checkHostPaths(ms []*runtimeapi.Mount, own ownPaths) error {
	for i, m := range ms {
		src := m.GetHostPath()
		if m.GetImage().GetImage() != "" || !filepath.IsAbs(src) || strings.IndexByte(src, 0) >= 0 {
			continue // image volumes and malformed paths are oci's to judge
		}
		real := realPath(src)
		if own.socket != "" && real == own.socket {
			continue
		}
		for _, d := range own.dirs {
			if d != "" && (real == d || strings.HasPrefix(real, d+string(filepath.Separator)) || d == "/") {
				return fmt.Errorf("mounts[%d].host_path %s (%s) is inside berthd's own directory %s: %w", i, src, real, d, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}
