package workload

import (
	"context"
	"fmt"
	"sync"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

var startMemoryFigures = []Figure{
	{ID: "mem.start.daemon", Title: "daemon RSS just after start (nothing pulled or run yet)", Unit: "MiB"},
	{ID: "mem.start.runtime", Title: "  runtime RSS just after start (daemon + helpers)", Unit: "MiB"},
}

var memoryFigures = []Figure{
	{ID: "mem.idle.daemon", Title: "daemon RSS, no pods (after the workloads above)", Unit: "MiB"},
	{ID: "mem.idle.runtime", Title: "runtime RSS, no pods (daemon + helpers)", Unit: "MiB"},
	{ID: "mem.pod.rss", Title: "runtime-owned RSS per running pod ((with N pods - idle) / N)", Unit: "MiB"},
	{ID: "mem.pod.pss", Title: "  the same in PSS (shared pages split among processes)", Unit: "MiB"},
	{ID: "mem.procs", Title: "  runtime processes with N pods", Unit: "count"},
}

// helperFigures are berth's two helper processes apart: the supervisor
// and the keeper above it (internal/keeper), which must stay small.
var helperFigures = []Figure{
	{ID: "mem.helper.supervisor.idle", Title: "berth-supervisor RSS, no pods", Unit: "MiB"},
	{ID: "mem.helper.keeper.idle", Title: "berth-keeper RSS, no pods", Unit: "MiB"},
	{ID: "mem.helper.keeper.idle.pss", Title: "  the same in PSS (its clean binary pages split)", Unit: "MiB"},
	{ID: "mem.helper.supervisor.pods", Title: "berth-supervisor RSS with N pods", Unit: "MiB"},
	{ID: "mem.helper.keeper.pods", Title: "berth-keeper RSS with N pods", Unit: "MiB"},
	{ID: "mem.helper.keeper.pods.pss", Title: "  the same in PSS", Unit: "MiB"},
}

// memory measures what the runtime itself costs per pod: the daemon's
// growth plus every helper process (containerd's shim per pod, berth's
// supervisor and keeper), not the pods' own processes (pause, sleep).
// With helpers set it records helperFigures instead, for a runtime that
// has a berth-keeper (ErrNotApplicable elsewhere). The pods start
// BurstInFlight at a time, as kubelet's pod workers start them: one at a
// time, the 50 took a peer most of a minute of make bench, unmeasured.
type memory struct {
	cfg     Config
	mu      sync.Mutex // guards pods
	pods    []*pod
	helpers bool
}

// startPods starts the workload's MemoryPods pods.
func (w *memory) startPods(ctx context.Context, t *target.Target, prefix string) error {
	return startMany(ctx, t, w.cfg, prefix, max(w.cfg.MemoryPods, 1), w.cfg.BurstInFlight, &w.mu, &w.pods, nil)
}

func (w *memory) Setup(ctx context.Context, t *target.Target) error {
	return podSetup(ctx, t, w.cfg)
}

func (w *memory) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	if w.helpers {
		return w.runHelpers(ctx, t, rec)
	}
	daemon, idle, err := t.Usage()
	if err != nil {
		return err
	}
	rec.Record("mem.idle.daemon", kibToMiB(daemon.RSSKiB))
	rec.Record("mem.idle.runtime", kibToMiB(idle.RSSKiB))
	n := max(w.cfg.MemoryPods, 1)
	if err := w.startPods(ctx, t, "mem"); err != nil {
		return err
	}
	_, busy, err := t.Usage()
	if err != nil {
		return err
	}
	rec.Record("mem.pod.rss", kibToMiB(busy.RSSKiB-idle.RSSKiB)/float64(n))
	rec.Record("mem.pod.pss", kibToMiB(busy.PSSKiB-idle.PSSKiB)/float64(n))
	rec.Record("mem.procs", float64(busy.Procs))
	return nil
}

func (w *memory) runHelpers(ctx context.Context, t *target.Target, rec Recorder) error {
	record := func(when string) error {
		sup, err := t.HelperUsage("berth-superviso") // comm keeps 15 bytes
		if err != nil {
			return err
		}
		keeper, err := t.HelperUsage("berth-keeper")
		if err != nil {
			return err
		}
		if keeper.Procs == 0 {
			return fmt.Errorf("%w: %s runs no berth-keeper", ErrNotApplicable, t.Name)
		}
		rec.Record("mem.helper.supervisor."+when, kibToMiB(sup.RSSKiB))
		rec.Record("mem.helper.keeper."+when, kibToMiB(keeper.RSSKiB))
		rec.Record("mem.helper.keeper."+when+".pss", kibToMiB(keeper.PSSKiB))
		return nil
	}
	if err := record("idle"); err != nil {
		return err
	}
	if err := w.startPods(ctx, t, "helper-mem"); err != nil {
		return err
	}
	return record("pods")
}

func (w *memory) Teardown(ctx context.Context, t *target.Target) error {
	return removeMany(ctx, t, w.pods, w.cfg.BurstInFlight)
}

// startMemory reads the runtimes' memory before any other workload: the
// footprint of a freshly started node daemon.
type startMemory struct{}

func (startMemory) Setup(context.Context, *target.Target) error { return nil }

func (startMemory) Run(_ context.Context, t *target.Target, rec Recorder) error {
	daemon, all, err := t.Usage()
	if err != nil {
		return err
	}
	rec.Record("mem.start.daemon", kibToMiB(daemon.RSSKiB))
	rec.Record("mem.start.runtime", kibToMiB(all.RSSKiB))
	return nil
}

func (startMemory) Teardown(context.Context, *target.Target) error { return nil }
