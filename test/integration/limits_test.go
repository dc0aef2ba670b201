package integration

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMetadataSizeLimits pins issue 17 item 5: a pod or container whose
// labels or annotations take more than the Kubernetes API server allows
// one object (256 KiB) is refused with InvalidArgument naming the field
// and the limit, before anything is made; at the limit it runs.
func TestMetadataSizeLimits(t *testing.T) {
	e := newPodEnv(t, "limits")
	ctx := context.Background()
	over := strings.Repeat("x", 256<<10) // with its key, one past the limit
	atLimit := strings.Repeat("x", 256<<10-len("big"))

	for _, tc := range []struct{ name, field string }{{"pod-labels", "labels"}, {"pod-annotations", "annotations"}} {
		cfg := podConfig("limits-"+tc.name, func(c *runtimeapi.PodSandboxConfig) {
			if tc.field == "labels" {
				c.Labels = map[string]string{"big": over}
			} else {
				c.Annotations = map[string]string{"big": over}
			}
		})
		id, err := e.rt.RunPodSandbox(ctx, cfg, "")
		if err == nil {
			e.rt.StopPodSandbox(ctx, id)
			e.rt.RemovePodSandbox(ctx, id)
		}
		if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tc.field) || !strings.Contains(s.Message(), "262144") {
			t.Errorf("%s: %v, want InvalidArgument naming %s and the limit", tc.name, err, tc.field)
		}
	}
	for _, tc := range []struct{ name, field string }{{"labels", "labels"}, {"annotations", "annotations"}} {
		cfg := e.containerConfig("limits-"+tc.name, "true")
		if tc.field == "labels" {
			cfg.Labels["big"] = over
		} else {
			cfg.Annotations = map[string]string{"big": over}
		}
		if s := e.createErr(t, cfg); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tc.field) || !strings.Contains(s.Message(), "262144") {
			t.Errorf("container %s: %v, want InvalidArgument naming %s and the limit", tc.name, s.Err(), tc.field)
		}
	}
	if list, _ := e.rt.ListPodSandbox(ctx, nil); len(list) != 1 {
		t.Errorf("refused pods left sandboxes: %d listed", len(list))
	}
	if list, _ := e.rt.ListContainers(ctx, nil); len(list) != 0 {
		t.Errorf("refused creates left containers: %v", list)
	}

	// Exactly at the limit, both maps: created and run.
	cfg := e.containerConfig("limits-at", "true")
	cfg.Labels = map[string]string{"big": atLimit}
	cfg.Annotations = map[string]string{"big": atLimit}
	id := e.run(t, cfg)
	if st := e.waitExit(t, id); st.ExitCode != 0 {
		t.Errorf("container at the limit: exit %d", st.ExitCode)
	}
	healthy(t, e.d)
}
