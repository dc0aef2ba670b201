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

func (w *list) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	want := max(w.cfg.ListContainers, 1)
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
