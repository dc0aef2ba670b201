package network

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/testsupport"
)

// Repeated pod starts and stops leave nothing behind: pins, veths, IP
// allocations, iptables rules, libcni cache entries.
func TestSetupTeardownLeaks(t *testing.T) {
	e := newEnv(t, nil)
	bw, err := ParseBandwidth(map[string]string{EgressBandwidthAnnotation: "100M"})
	if err != nil {
		t.Fatal(err)
	}
	countPins := func() int { ids, _ := netns.List(e.netnsDn); return len(ids) }
	cached := func() int { f, _ := filepath.Glob(filepath.Join(e.m.opts.CacheDir, "results", "*")); return len(f) }
	vethsBefore, pinsBefore := countVeths(t, e.bridge), countPins()

	ctx := context.Background()
	start := time.Now()
	const cycles = 20
	for i := range cycles {
		id := fmt.Sprintf("leak%02d", i)
		path, err := netns.New(e.netnsDn, id)
		if err != nil {
			t.Fatal(err)
		}
		p := Pod{ID: id, Name: id, Namespace: "default", UID: id, NetNS: path, Bandwidth: bw,
			PortMappings: []PortMapping{{HostPort: 40000 + int32(i), ContainerPort: 80, Protocol: "tcp"}}}
		t.Cleanup(func() { // a failed cycle's leftovers
			if t.Failed() {
				_ = e.m.Teardown(ctx, p)
				_ = netns.Remove(path)
			}
		})
		if _, err := e.m.Setup(ctx, p); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := e.m.Teardown(ctx, p); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := netns.Remove(path); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	t.Logf("%d Setup/Teardown cycles in %v", cycles, time.Since(start))

	if n := countPins(); n != pinsBefore {
		t.Errorf("netns pins = %d, want %d", n, pinsBefore)
	}
	// Veths of a freed namespace go asynchronously.
	testsupport.PollUntil(t, "veths back to start", 10*time.Second, func() bool { return countVeths(t, e.bridge) == vethsBefore })
	if got := e.allocated(); len(got) != 0 {
		t.Errorf("host-local allocations left: %v", got)
	}
	if got := e.natRules(); len(got) != 0 {
		t.Errorf("nat rules left:\n%s", strings.Join(got, "\n"))
	}
	if n := cached(); n != 0 {
		t.Errorf("libcni cache entries left: %d", n)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", e.bridge)); err != nil {
		t.Errorf("bridge %s: %v", e.bridge, err)
	}
}
