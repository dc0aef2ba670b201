package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

var execFigures = []Figure{
	{ID: "exec.sync", Title: "ExecSync /bin/true round trip", Unit: "ms"},
	{ID: "exec.cpu.daemon", Title: "  CPU of the daemon per call", Unit: "ms"},
	{ID: "exec.cpu.runtime", Title: "  CPU of all runtime processes per call (daemon + shims/supervisor, with reaped children)", Unit: "ms"},
}

// execTimeout is the ExecSync timeout, as a probe's timeoutSeconds.
const execTimeout = 10 * time.Second

// execSync times probes. CPU is measured over a whole round, as the
// kernel counts it in 10 ms ticks, and divided by the calls: one sample
// per round. The per-runtime CPU includes the children a process reaped
// (runc exec under a shim, the exec'd process itself), so the costs of
// both designs are counted alike wherever the work happens.
type execSync struct {
	cfg Config
	pod *pod
	ctr string
}

func (w *execSync) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	p, ctr, _, err := startPod(ctx, t, "exec", w.cfg.Image, sleepCmd)
	w.pod, w.ctr = p, ctr
	return err
}

func (w *execSync) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	n := w.cfg.perRound(w.cfg.Samples)
	daemon0, all0, err := t.Usage()
	if err != nil {
		return err
	}
	for range n {
		t0 := time.Now()
		if _, _, err := t.Runtime.ExecSync(ctx, w.ctr, []string{"/bin/true"}, execTimeout); err != nil {
			return fmt.Errorf("ExecSync: %w", err)
		}
		rec.Record("exec.sync", ms(time.Since(t0)))
	}
	daemon1, all1, err := t.Usage()
	if err != nil {
		return err
	}
	rec.Record("exec.cpu.daemon", ms(daemon1.CPU-daemon0.CPU)/float64(n))
	rec.Record("exec.cpu.runtime", ms(all1.CPU-all0.CPU)/float64(n))
	return nil
}

func (w *execSync) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, []*pod{w.pod})
}
