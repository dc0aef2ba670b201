package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestCheckHostPaths: a CRI host_path must not expose berthd's own
// directories, through a symlink either (issue 9); their parents, "/" and
// the CRI socket stay allowed.
func TestCheckHostPaths(t *testing.T) {
	base := t.TempDir()
	rootDir, stateDir := filepath.Join(base, "lib", "berth"), filepath.Join(base, "run", "berth")
	os.MkdirAll(filepath.Join(rootDir, "containers"), 0o700)
	os.MkdirAll(filepath.Join(stateDir, "supervisor"), 0o700)
	sock := filepath.Join(stateDir, "berth.sock")
	os.WriteFile(sock, nil, 0o600)
	os.Symlink(filepath.Join(rootDir, "containers"), filepath.Join(base, "innocent"))
	own := ownPaths{dirs: []string{realPath(rootDir), realPath(stateDir)}, socket: realPath(sock)}

	for _, tc := range []struct {
		name, host string
		refused    bool
	}{
		{"root_dir", rootDir, true},
		{"below root_dir", filepath.Join(rootDir, "containers"), true},
		{"state_dir with dot dot", filepath.Join(stateDir, "x", "..", "supervisor"), true},
		{"symlink into root_dir", filepath.Join(base, "innocent"), true},
		{"missing path below state_dir", filepath.Join(stateDir, "later"), true},
		{"the CRI socket", sock, false},
		{"a parent", filepath.Join(base, "lib"), false},
		{"slash", "/", false},
		{"a sibling with the same prefix", rootDir + "-data", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHostPaths([]*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/tmp"}, {ContainerPath: "/y", HostPath: tc.host}}, own)
			if tc.refused != (err != nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
				t.Fatalf("%s: %v, refused want %v", tc.host, err, tc.refused)
			}
		})
	}
}
