package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

// listWarmup is how many calls of each kind are made, untimed, before the
// timed ones: kubelet's connection is long-lived and relists every
// second. On a fresh connection right after 200 containers were started,
// berth's first 30 ListContainers took 2-3 times as long as its calls
// 100-300 (berthd took ~17 page faults a call, then ~1-3; a client with a
// 16 MiB flow-control window from the start did not see it), and
// containerd 2.3's first calls were as uneven.
const listWarmup = 30

// timeLists times the calls kubelet makes every second or few on a node
// (its relist and its stats loop), which grow with the containers on it:
// samples of ListContainers, then of ListContainerStats, each after
// listWarmup untimed calls. Each listing must show at least want
// containers. node-burst calls it on its settled pods.
func timeLists(ctx context.Context, t *target.Target, samples, want int, rec Recorder) error {
	for range listWarmup {
		if _, err := t.Runtime.ListContainers(ctx, nil); err != nil {
			return fmt.Errorf("ListContainers: %w", err)
		}
		if _, err := t.Runtime.ListContainerStats(ctx, nil); err != nil {
			return fmt.Errorf("ListContainerStats: %w", err)
		}
	}
	for range max(samples, 1) {
		t0 := time.Now()
		ctrs, err := t.Runtime.ListContainers(ctx, nil)
		if err != nil {
			return fmt.Errorf("ListContainers: %w", err)
		}
		rec.Record("list.containers", ms(time.Since(t0)))
		if len(ctrs) < want {
			return fmt.Errorf("ListContainers: %d containers, want at least %d", len(ctrs), want)
		}
	}
	for range max(samples, 1) {
		t0 := time.Now()
		stats, err := t.Runtime.ListContainerStats(ctx, nil)
		if err != nil {
			return fmt.Errorf("ListContainerStats: %w", err)
		}
		rec.Record("list.stats", ms(time.Since(t0)))
		if len(stats) < want {
			return fmt.Errorf("ListContainerStats: %d containers, want at least %d", len(stats), want)
		}
	}
	return nil
}
