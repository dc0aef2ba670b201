package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecSyncBigEnvironment: exec probes work in a container with 1.5 MiB
// of environment (issue 17: berthd sent the whole process, environment
// included, to the supervisor with every probe, and the supervisor's 1 MiB
// request cap refused it, while CreateContainer had accepted it).
func TestExecSyncBigEnvironment(t *testing.T) {
	e := newPodEnv(t, "bigenv")
	cfg := e.containerConfig("bigenv", "sleep", "1000")
	for i := range 1536 {
		cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: fmt.Sprintf("BIG_%04d", i), Value: []byte(strings.Repeat("x", 1014))})
	}
	cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: "PROBE", Value: []byte("ok")})
	id := e.run(t, cfg)
	for range 3 { // a probe runs again and again
		stdout, stderr, err := e.rt.ExecSync(context.Background(), id, []string{"sh", "-c", `echo $PROBE ${#BIG_1535}`}, 0)
		if err != nil || string(stdout) != "ok 1014\n" {
			t.Fatalf("ExecSync: %v, stdout %q, stderr %q\n%s", err, stdout, stderr, e.d.Logs)
		}
	}
}
