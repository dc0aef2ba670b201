package workload

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/procfs"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

var podStartFigures = []Figure{
	{ID: "pod.start", Title: "warm pod start (RunPodSandbox + CreateContainer + StartContainer)", Unit: "ms"},
	{ID: "pod.start.run", Title: "  RunPodSandbox (incl. CNI ADD)", Unit: "ms", Floor: "pod.cni.add"},
	{ID: "pod.cni.add", Title: "    floor: the runtime's CNI plugin chain's own ADD for a new namespace", Unit: "ms"},
	{ID: "pod.start.create", Title: "  CreateContainer", Unit: "ms"},
	{ID: "pod.start.start", Title: "  StartContainer", Unit: "ms"},
	{ID: "pod.start.cpu", Title: "  CPU of every runtime process per pod start (daemon, shims/supervisor, CNI plugins, the pod's inits; with reaped children)", Unit: "ms"},
	{ID: "pod.teardown", Title: "pod teardown (StopPodSandbox + RemovePodSandbox, incl. CNI DEL)", Unit: "ms", Floor: "pod.cni.del"},
	{ID: "pod.cni.del", Title: "  floor: the CNI plugin chain's own DEL", Unit: "ms"},
}

var parallelFigures = []Figure{
	{ID: "pod.parallel", Title: "warm pod start, N at once: each pod", Unit: "ms"},
	{ID: "pod.parallel.wall", Title: "  wall time of the batch", Unit: "ms"},
}

// podSetup pulls the container and pause images: the pod figures are for
// warm starts, as kubelet's usual case (image already on the node).
func podSetup(ctx context.Context, t *target.Target, cfg Config) error {
	return ensureImages(ctx, t, cfg.Image, cfg.SandboxImage)
}

// podStart starts one pod at a time and tears it down again, so that each
// sample sees the same number of pods on the node.
type podStart struct {
	cfg  Config
	pods []*pod // started and not yet removed
	cni  *cniFloor
}

func (w *podStart) Setup(ctx context.Context, t *target.Target) error {
	var err error
	if w.cni, err = newCNIFloor(t, filepath.Join(w.cfg.FloorDir, "cni")); err != nil && !errors.Is(err, ErrNotApplicable) {
		return err
	}
	return podSetup(ctx, t, w.cfg)
}

// Run times each pod start, then its teardown and the CNI floor. The CPU
// of the runtime's process tree is read around each start only and added
// up over the round, one sample per round: the kernel reports it in 10 ms
// ticks, and a start costs ~10 of them spread over a dozen processes.
func (w *podStart) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	n := w.cfg.perRound(w.cfg.Samples)
	var cpu time.Duration
	for i := range n {
		var tr procfs.CPUTracker
		before, err := t.TreeCPU()
		if err != nil {
			return err
		}
		tr.Observe(before)
		p, _, st, err := startPod(ctx, t, fmt.Sprintf("start-%d", i), w.cfg.Image, sleepCmd)
		if p != nil {
			w.pods = append(w.pods, p)
		}
		if err != nil {
			return err
		}
		after, err := t.TreeCPU()
		if err != nil {
			return err
		}
		tr.Observe(after)
		cpu += tr.Total()
		rec.Record("pod.start", ms(st.total()))
		rec.Record("pod.start.run", ms(st.run))
		rec.Record("pod.start.create", ms(st.create))
		rec.Record("pod.start.start", ms(st.start))

		d, err := removePod(ctx, t, p.id)
		if err != nil {
			return err
		}
		w.pods = w.pods[:len(w.pods)-1]
		rec.Record("pod.teardown", ms(d))

		// The floor of each sample, right after it, on the same network.
		if w.cni != nil {
			add, del, err := w.cni.addDel(ctx)
			if err != nil {
				return err
			}
			rec.Record("pod.cni.add", ms(add))
			rec.Record("pod.cni.del", ms(del))
		}
	}
	rec.Record("pod.start.cpu", ms(cpu)/float64(max(n, 1)))
	return nil
}

func (w *podStart) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, w.pods)
}

// parallelStart starts ParallelPods pods at once, as kubelet does when a
// node receives several pods together; each pod's own latency and the
// batch's wall time are recorded. Batches per round make up Samples pods.
type parallelStart struct {
	cfg  Config
	mu   sync.Mutex // guards pods, appended by the starting goroutines
	pods []*pod
}

func (w *parallelStart) Setup(ctx context.Context, t *target.Target) error {
	return podSetup(ctx, t, w.cfg)
}

func (w *parallelStart) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	n := max(w.cfg.ParallelPods, 1)
	batches := max(w.cfg.perRound(w.cfg.Samples)/n, 1)
	for b := range batches {
		if err := w.batch(ctx, t, rec, b, n); err != nil {
			return err
		}
		// Remove the batch untimed before the next, so every batch starts
		// on an equally empty node.
		w.mu.Lock()
		pods := w.pods
		w.pods = nil
		w.mu.Unlock()
		if err := removePods(ctx, t, pods); err != nil {
			return err
		}
	}
	return nil
}

func (w *parallelStart) batch(ctx context.Context, t *target.Target, rec Recorder, b, n int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Go(func() {
			p, _, st, err := startPod(ctx, t, fmt.Sprintf("par-%d-%d", b, i), w.cfg.Image, sleepCmd)
			if p != nil {
				w.mu.Lock()
				w.pods = append(w.pods, p)
				w.mu.Unlock()
			}
			if err != nil {
				errs[i] = err
				return
			}
			rec.Record("pod.parallel", ms(st.total()))
		})
	}
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	rec.Record("pod.parallel.wall", ms(wall))
	return nil
}

func (w *parallelStart) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, w.pods)
}
