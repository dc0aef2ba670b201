package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

var listFigures = []Figure{
	{ID: "list.containers", Title: "ListContainers, N running containers", Unit: "ms"},
	{ID: "list.stats", Title: "ListContainerStats, N running containers", Unit: "ms"},
}

// containersPerPod spreads the containers of the list workload: ten per
// pod, a busy but plausible pod, and a tenth of the pods (and shims) of one
// container per pod.
const containersPerPod = 10

// list times the calls kubelet makes every few seconds (its relist and its
// stats loop), which grow with the containers on the node.
type list struct {
	cfg  Config
	mu   sync.Mutex // guards pods
	pods []*pod
}

// Setup starts ListContainers containers, rounded up to whole pods,
// BurstInFlight pods at a time as kubelet would; one at a time, it took a
// peer a minute and a half of make bench, and it is not measured.
func (w *list) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	pods := (max(w.cfg.ListContainers, 1) + containersPerPod - 1) / containersPerPod
	var errMu sync.Mutex
	var errs []error
	err := startMany(ctx, t, w.cfg, "list", pods, w.cfg.BurstInFlight, &w.mu, &w.pods, func(p *pod, _ string, _ startTimes) {
		for c := 1; c < containersPerPod; c++ {
			if _, _, err := startContainer(ctx, t, p, fmt.Sprintf("c%d", c), w.cfg.Image, sleepCmd); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
				return
			}
		}
	})
	return errors.Join(append(errs, err)...)
}

// listWarmup is how many calls of each kind are made, untimed, before the
// timed ones: kubelet's connection is long-lived and relists every
// second. On a fresh connection right after the setup, berth's first 30
// ListContainers of 200 containers took 2-3 times as long as its calls
// 100-300 (berthd took ~17 page faults a call, then ~1-3; a client with a
// 16 MiB flow-control window from the start did not see it), and
// containerd 2.3's first calls were as uneven.
const listWarmup = 30

// listSettle bounds the wait for the machine to settle after the setup.
const listSettle = 30 * time.Second

func (w *list) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	want := max(w.cfg.ListContainers, 1)
	// The setup's containers are still starting: time the calls on a
	// settled node, as the relist it stands for runs; for at most half a
	// minute, so that a runtime whose background work never calms does
	// not add minutes to make bench (containerd 2.3 never settled within
	// the 2 minutes node-burst's restart allows).
	if err := settle(ctx, listSettle); err != nil {
		return err
	}
	for range listWarmup {
		if _, err := t.Runtime.ListContainers(ctx, nil); err != nil {
			return fmt.Errorf("ListContainers: %w", err)
		}
		if _, err := t.Runtime.ListContainerStats(ctx, nil); err != nil {
			return fmt.Errorf("ListContainerStats: %w", err)
		}
	}
	for range max(w.cfg.Samples, 1) {
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
	for range max(w.cfg.Samples, 1) {
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

func (w *list) Teardown(ctx context.Context, t *target.Target) error {
	return removeMany(ctx, t, w.pods, w.cfg.BurstInFlight)
}
