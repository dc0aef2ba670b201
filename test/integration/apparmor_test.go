package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestAppArmorDefaultProfile: on a kernel with AppArmor (the test VM's;
// this host's has none, and the test skips), berthd loads its default
// profile at start and RuntimeDefault containers, and their execs, run
// under it; the profile stops a mount that the container's capabilities
// alone would allow, and an Unconfined container is not confined.
func TestAppArmorDefaultProfile(t *testing.T) {
	e := newPodEnv(t, "apparmor")
	ctx := context.Background()
	st, err := e.rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var aa struct {
		Enabled        bool   `json:"enabled"`
		DefaultProfile string `json:"defaultProfile"`
		Reason         string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(st.Info["apparmor"]), &aa); err != nil {
		t.Fatalf("Status info apparmor %q: %v", st.Info["apparmor"], err)
	}
	if !aa.Enabled {
		// skip: platform
		t.Skipf("AppArmor is off on this kernel (%s); the test VM runs this", aa.Reason)
	}
	if aa.DefaultProfile != "berth-default" {
		t.Fatalf("default profile %q (%s), want berth-default", aa.DefaultProfile, aa.Reason)
	}

	// CAP_SYS_ADMIN lets a container mount a tmpfs; the profile does not.
	withAdmin := func(name string, prof *runtimeapi.SecurityProfile) string {
		cfg := e.containerConfig(name, "sleep", "3600")
		sc := cfg.Linux.SecurityContext
		sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		sc.Apparmor = prof
		return e.run(t, cfg)
	}
	for _, tc := range []struct {
		name    string
		prof    *runtimeapi.SecurityProfile
		label   string
		mountOK bool
	}{
		{"default", nil, "berth-default (enforce)", false},
		{"runtime-default", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, "berth-default (enforce)", false},
		{"unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "unconfined", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := withAdmin(tc.name, tc.prof)
			out, stderr, err := e.rt.ExecSync(ctx, id, []string{"cat", "/proc/self/attr/current"}, 0)
			if err != nil {
				t.Fatalf("exec: %v %s", err, stderr)
			}
			if got := strings.TrimRight(string(out), "\x00\n"); got != tc.label {
				t.Errorf("exec runs under %q, want %q", got, tc.label)
			}
			// The container's init (pid 1 in its pid namespace) too.
			out, _, _ = e.rt.ExecSync(ctx, id, []string{"cat", "/proc/1/attr/current"}, 0)
			if got := strings.TrimRight(string(out), "\x00\n"); got != tc.label {
				t.Errorf("init runs under %q, want %q", got, tc.label)
			}
			_, stderr, err = e.rt.ExecSync(ctx, id, []string{"sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t"}, 0)
			if mounted := err == nil; mounted != tc.mountOK {
				t.Errorf("mount allowed: %v, want %v (%v %s)", mounted, tc.mountOK, err, stderr)
			}
		})
	}
}
