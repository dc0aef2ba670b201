package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

// LifecycleName is the container-lifecycle workload; CreateStartFigure
// its CreateContainer+StartContainer, which container-floor is the floor of.
const (
	LifecycleName     = "container-lifecycle"
	CreateStartFigure = "ctr.create_start"
)

var lifecycleFigures = []Figure{
	{ID: "ctr.cycle", Title: "container create+start+stop+remove in a running pod", Unit: "ms"},
	{ID: "ctr.create", Title: "  CreateContainer", Unit: "ms"},
	{ID: "ctr.start", Title: "  StartContainer", Unit: "ms"},
	{ID: "ctr.stop", Title: "  StopContainer (pause: exits on SIGTERM)", Unit: "ms"},
	{ID: "ctr.remove", Title: "  RemoveContainer", Unit: "ms"},
	// Summed per cycle, not from the medians above: what container-floor is the floor of.
	{ID: CreateStartFigure, Title: "  CreateContainer+StartContainer, per cycle", Unit: "ms"},
}

// stopTimeout is StopContainer's grace period. The container exits on
// SIGTERM at once, so it is never reached.
const stopTimeout = 10

// The cycled container runs the sandbox image's pause: as PID 1 it exits
// at once on SIGTERM (busybox sleep ignores it, and a shell's trap waits
// for its current command), so StopContainer measures the runtime's stop
// path rather than a grace period or a shell.

// lifecycle cycles containers inside one pod that stays up: the cost of a
// container restart, or of an init container, without the sandbox's.
type lifecycle struct {
	cfg Config
	pod *pod
}

func (w *lifecycle) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	p, err := runPod(ctx, t, "lifecycle")
	if err != nil {
		return err
	}
	w.pod = p
	return nil
}

func (w *lifecycle) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	for i := range w.cfg.perRound(w.cfg.Samples) {
		ctr, st, err := startContainer(ctx, t, w.pod, fmt.Sprintf("cycle-%d", i), w.cfg.SandboxImage, nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := t.Runtime.StopContainer(ctx, ctr, stopTimeout); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
		t1 := time.Now()
		if err := t.Runtime.RemoveContainer(ctx, ctr); err != nil {
			return fmt.Errorf("RemoveContainer: %w", err)
		}
		stop, remove := t1.Sub(t0), time.Since(t1)
		rec.Record(CreateStartFigure, ms(st.create+st.start))
		rec.Record("ctr.create", ms(st.create))
		rec.Record("ctr.start", ms(st.start))
		rec.Record("ctr.stop", ms(stop))
		rec.Record("ctr.remove", ms(remove))
		rec.Record("ctr.cycle", ms(st.total()+stop+remove))
	}
	return nil
}

func (w *lifecycle) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, []*pod{w.pod})
}
