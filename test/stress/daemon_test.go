// Package stress runs berthd under churn and load: many pod lifecycles in
// flight at once, concurrent pulls, execs and lists, then checks that
// nothing leaked. It starts real berthd binaries through
// test/internal/harness, as test/integration does. The tests run only
// when BERTH_STRESS is set (make test-stress, test-stress-short).
package stress

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

func needStress(t *testing.T) {
	if os.Getenv("BERTH_STRESS") == "" {
		// skip: opt-in (make test-stress-short sets BERTH_STRESS)
		t.Skip("stress tests run with BERTH_STRESS=1 (make test-stress-short)")
	}
}

// daemon is a running pod daemon with its CRI clients.
type daemon struct {
	*harness.Daemon
	reg     *harness.Registry
	net     harness.Net
	metrics string // host:port of /metrics
	rt      internalapi.RuntimeService
	img     internalapi.ImageManagerService
}

// newDaemon starts a pod daemon with CRI timeouts for 20 pods in flight
// and 50 pulls at once, failing the test on a data race.
func newDaemon(t *testing.T) *daemon {
	t.Helper()
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	// A /24 holds the 20 pods in flight; 10.88 keeps clear of
	// test/integration's networks.
	n := os.Getpid()%200 + 10
	hd, reg, net := harness.NewPod(t, fmt.Sprintf("metrics_address = %q\n", metrics), fmt.Sprintf("berthst%d", n), fmt.Sprintf("10.88.%d", n))
	hd.RuntimeTimeout, hd.ImageTimeout, hd.RaceCheck = 30*time.Second, 2*time.Minute, true
	hd.Start()
	hd.WaitReady()
	return &daemon{Daemon: hd, reg: reg, net: net, metrics: metrics, rt: hd.RuntimeClient(), img: hd.ImageClient()}
}

// goroutines is go_goroutines from berthd's /metrics, or -1.
func (d *daemon) goroutines() int {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

func podConfig(name string, attempt uint32, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "stress", Uid: "uid-" + name, Attempt: attempt},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"app": name},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func (d *daemon) containerConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: d.reg.Host + "/" + harness.BusyboxRepo},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func readDirNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out, err
}
