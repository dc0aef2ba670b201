package config

import (
	"errors"
	"testing"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

func TestResolveHandler(t *testing.T) {
	cfg := &configv1.Config{DefaultRuntime: "runc", Runtimes: map[string]configv1.Runtime{
		"runc": {},
		"crun": {Type: configv1.RuntimeOCI, RuntimePath: "/usr/bin/crun", RuntimeRoot: "/run/crun"},
	}}
	for _, tc := range []struct {
		requested, name string
		kind            supv1.RuntimeKind
		path, root      string
		wantErr         error
	}{
		{requested: "", name: "runc", kind: supv1.RuntimeLibcontainer, root: "/state/runtimes/runc"},
		{requested: "crun", name: "crun", kind: supv1.RuntimeOCI, path: "/usr/bin/crun", root: "/run/crun"},
		{requested: "kata", wantErr: errdefs.ErrInvalidArgument},
	} {
		h, err := ResolveHandler(cfg, tc.requested)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%q: %v, want %v", tc.requested, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		kind, path, root := SupervisorRuntime(h, "/state")
		if h.Name != tc.name || kind != tc.kind || path != tc.path || root != tc.root {
			t.Errorf("%q: %s %s %q %q, want %s %s %q %q", tc.requested, h.Name, kind, path, root, tc.name, tc.kind, tc.path, tc.root)
		}
	}
}
