// Package integration starts real berthd binaries (test/internal/harness)
// and drives them through kubelet's own CRI client (k8s.io/cri-client), as
// kubelet would.
package integration

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/berth-cri/berth/test/internal/harness"
)

var netSeq atomic.Int32

// newPodDaemon is a daemon that can run pods, on a bridge and /24 of its
// own: one per daemon, apart from test/stress's (10.88).
func newPodDaemon(t *testing.T, extra string) (*harness.Daemon, *harness.Registry, harness.Net) {
	t.Helper()
	n := netSeq.Add(1) + int32(os.Getpid()%100)*3
	return harness.NewPod(t, extra, fmt.Sprintf("berthit%d", n), fmt.Sprintf("10.87.%d", n%250))
}
