package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/procfs"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

// The node-scale workloads: a node filled to kubelet's default maxPods.

var burstFigures = []Figure{
	{ID: "burst.pod.start", Title: "pod start during the burst (RunPodSandbox + CreateContainer + StartContainer), each pod", Unit: "ms"},
	{ID: "burst.wall", Title: "  wall time of the burst: first pod started to last pod running", Unit: "ms"},
	{ID: "burst.exec", Title: "ExecSync /bin/true probe during the burst and hold (every running pod, every 2 s)", Unit: "ms"},
	{ID: "burst.exec.failed", Title: "  probes that failed or timed out", Unit: "count"},
	{ID: "burst.list.containers", Title: "ListContainers during the burst and hold (every second, as kubelet's relist)", Unit: "ms"},
	{ID: "burst.list.sandboxes", Title: "ListPodSandbox during the burst and hold", Unit: "ms"},
	{ID: "burst.teardown.wall", Title: "teardown of every pod (StopPodSandbox + RemovePodSandbox, N in flight), wall time", Unit: "ms"},
	{ID: "burst.cpu", Title: "CPU time of the runtime's processes over burst, hold and teardown (with reaped children)", Unit: "s"},
}

var restartFigures = []Figure{
	{ID: "restart.answer", Title: "daemon restart with N pods running: launch to first CRI answer (Version)", Unit: "ms"},
	{ID: "restart.ready", Title: "  launch to every pod listed READY (ListPodSandbox; none if some never are, below)", Unit: "ms"},
	{ID: "restart.lost", Title: "  pods not listed READY again a minute after the launch (kubelet would start them again)", Unit: "count"},
	{ID: "restart.newpod", Title: "  launch to a new pod's container running (ready + RunPodSandbox + CreateContainer + StartContainer)", Unit: "ms"},
	{ID: "restart.stop", Title: "  SIGTERM to the old daemon's exit (not a recovery cost)", Unit: "ms"},
}

// settledFigures are timed on the burst's pods once the probes have
// stopped and the machine has settled, before the restart.
var settledFigures = []Figure{
	{ID: "restart.settle", Title: "the machine settling once the probes stop: at most one runnable task per CPU for 1 s (not a recovery cost)", Unit: "ms"},
	{ID: "list.containers", Title: fmt.Sprintf("ListContainers with the N pods running, settled (after %d untimed calls)", listWarmup), Unit: "ms"},
	{ID: "list.stats", Title: "ListContainerStats with the N pods running, settled", Unit: "ms"},
}

const (
	// probePeriod is the ExecSync probe's period: a liveness probe of
	// periodSeconds 2, the busiest kubelet's users commonly set.
	probePeriod = 2 * time.Second
	// relistPeriod is kubelet's PLEG relist period.
	relistPeriod = time.Second
	// cpuSamplePeriod is how often the burst reads the runtime's CPU: a
	// shim's time after its last sample is lost when it exits.
	cpuSamplePeriod = 250 * time.Millisecond
)

// startMany starts n pods (busybox sleep) with inFlight of them starting
// at once, as kubelet's pod workers do, calling started (from the
// starting goroutine) for each pod that runs. Started pods are kept in
// *pods (under mu) even when a later one fails; the first error is
// returned once every start has ended.
func startMany(ctx context.Context, t *target.Target, cfg Config, prefix string, n, inFlight int, mu *sync.Mutex, pods *[]*pod, started func(p *pod, ctr string, st startTimes)) error {
	sem := make(chan struct{}, max(inFlight, 1))
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			p, ctr, st, err := startPod(ctx, t, fmt.Sprintf("%s-%d", prefix, i), cfg.Image, sleepCmd)
			if p != nil {
				mu.Lock()
				*pods = append(*pods, p)
				mu.Unlock()
			}
			if err != nil {
				errs[i] = err
				return
			}
			if started != nil {
				started(p, ctr, st)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// removeMany removes pods with inFlight removals at once.
func removeMany(ctx context.Context, t *target.Target, pods []*pod, inFlight int) error {
	sem := make(chan struct{}, max(inFlight, 1))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := removePod(ctx, t, p.id); err != nil {
				errs[i] = fmt.Errorf("pod %s: %w", p.id, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// burst is a node filling up: BurstPods pods started BurstInFlight at a
// time, every running pod probed by ExecSync every probePeriod and the
// node relisted every second, as kubelet does; then BurstHold with all of
// them running and probed. Then, with the probes stopped and every pod
// still running, the machine settles, kubelet's relist and stats calls
// are timed (timeLists), the daemon is restarted (the runtime's restart
// command) and its recovery timed; then every pod is torn down. One set of
// pods serves the burst, the lists and the restart: starting 110 pods
// again for the restart cost a peer 1.5 to 2 minutes of make bench, and
// 200 containers for the lists 1.5 to 3.5 more. The runtime's
// CPU is sampled over burst, hold and teardown, not over the restart
// (cpuSampler: shims that exit keep their time).
type burst struct {
	cfg  Config
	mu   sync.Mutex // guards pods
	pods []*pod
}

func (w *burst) Setup(ctx context.Context, t *target.Target) error {
	return podSetup(ctx, t, w.cfg)
}

func (w *burst) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	cpu, err := startCPUSampler(ctx, t)
	if err != nil {
		return err
	}
	defer func() { cpu.stop() }()
	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	defer func() { stopBG(); bgWG.Wait() }()
	every := func(period time.Duration, fn func()) {
		bgWG.Go(func() { tick(bg, period, fn) })
	}
	every(relistPeriod, func() {
		t0 := time.Now()
		if _, err := t.Runtime.ListContainers(bg, nil); err == nil {
			rec.Record("burst.list.containers", ms(time.Since(t0)))
		}
		t1 := time.Now()
		if _, err := t.Runtime.ListPodSandbox(bg, nil); err == nil {
			rec.Record("burst.list.sandboxes", ms(time.Since(t1)))
		}
	})
	var failed atomic.Int64
	probe := func(ctr string) {
		// One probe at a time per container, as kubelet's probe worker.
		every(probePeriod, func() {
			t0 := time.Now()
			if _, _, err := t.Runtime.ExecSync(bg, ctr, []string{"/bin/true"}, execTimeout); err != nil {
				if bg.Err() == nil {
					failed.Add(1)
				}
				return
			}
			rec.Record("burst.exec", ms(time.Since(t0)))
		})
	}

	n := max(w.cfg.BurstPods, 1)
	t0 := time.Now()
	err = startMany(ctx, t, w.cfg, "burst", n, w.cfg.BurstInFlight, &w.mu, &w.pods, func(_ *pod, ctr string, st startTimes) {
		rec.Record("burst.pod.start", ms(st.total()))
		probe(ctr)
	})
	if err != nil {
		return err
	}
	rec.Record("burst.wall", ms(time.Since(t0)))
	select {
	case <-time.After(w.cfg.BurstHold):
	case <-ctx.Done():
		return ctx.Err()
	}
	stopBG()
	bgWG.Wait()
	rec.Record("burst.exec.failed", float64(failed.Load()))
	spent, err := cpu.stop()
	if err != nil {
		return err
	}

	// The probes' last execs, cancelled by the client, still run in the
	// runtime: restarted into that load, containerd 1.6 timed out asking
	// its shims for their state and listed none of 110 pods READY again
	// within 5 minutes. What is timed next is a settled node's (its
	// relist, its recovery), so the machine settles first.
	t2 := time.Now()
	if err := settle(ctx); err != nil {
		return err
	}
	rec.Record("restart.settle", ms(time.Since(t2)))
	if err := timeLists(ctx, t, w.cfg.Samples, n, rec); err != nil {
		return err
	}
	if len(t.Restart) > 0 {
		if err := restartDaemon(ctx, t, w.cfg, &w.mu, &w.pods, rec); err != nil {
			return err
		}
	}

	if cpu, err = startCPUSampler(ctx, t); err != nil {
		return err
	}
	w.mu.Lock()
	pods := w.pods
	w.pods = nil
	w.mu.Unlock()
	t1 := time.Now()
	if err := removeMany(ctx, t, pods, w.cfg.BurstInFlight); err != nil {
		w.pods = pods // Teardown tries again
		return err
	}
	rec.Record("burst.teardown.wall", ms(time.Since(t1)))
	rest, err := cpu.stop()
	if err != nil {
		return err
	}
	rec.Record("burst.cpu", (spent + rest).Seconds())
	return nil
}

func (w *burst) Teardown(ctx context.Context, t *target.Target) error {
	return removeMany(ctx, t, w.pods, w.cfg.BurstInFlight)
}

// tick calls fn every period until ctx ends; fn calls do not overlap.
func tick(ctx context.Context, period time.Duration, fn func()) {
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			fn()
		}
	}
}

// cpuSampler adds up the CPU time of the runtime's processes from its
// start to its stop, reading them every cpuSamplePeriod: a shim's time
// after its last sample is lost when it exits.
type cpuSampler struct {
	t       *target.Target
	tracker procfs.CPUTracker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	err     error // the first failed sample; written by the sampling goroutine until wg is done
	stopped bool
}

func startCPUSampler(ctx context.Context, t *target.Target) (*cpuSampler, error) {
	s := &cpuSampler{t: t}
	if err := s.sample(); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.wg.Go(func() {
		tick(bg, cpuSamplePeriod, func() {
			if err := s.sample(); err != nil && s.err == nil {
				s.err = err
			}
		})
	})
	return s, nil
}

func (s *cpuSampler) sample() error {
	pids, err := s.t.PIDs()
	if err != nil {
		return err
	}
	s.tracker.Observe(procfs.CPUOf(pids))
	return nil
}

// stop ends the sampling with a last sample and returns the CPU time
// spent since the start. It may be called again (the deferred call).
func (s *cpuSampler) stop() (time.Duration, error) {
	if s == nil || s.stopped {
		return 0, nil
	}
	s.stopped = true
	s.cancel()
	s.wg.Wait()
	if s.err == nil {
		s.err = s.sample()
	}
	if s.err != nil {
		return 0, fmt.Errorf("CPU samples: %w", s.err)
	}
	return s.tracker.Total(), nil
}

// settleWindow is how long the machine must have been settled.
// settleTimeout bounds the wait: berth and containerd 1.6 settled in 3 to
// 24 s after the burst on slow days, containerd 2.3 (110 shims waking up)
// not within 2 minutes, so a longer bound only made make bench longer.
const (
	settleWindow  = time.Second
	settleTimeout = time.Minute
)

// settle waits until the machine's runnable tasks (procs_running, sampled
// every 100 ms) have stayed at most one per CPU for settleWindow, or
// settleTimeout has passed (then it goes on: a machine busy with other
// work is noted in the report's load average, not a failure).
func settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	calm := time.Time{}
	for {
		n, err := procfs.RunningTasks()
		if err != nil {
			return err
		}
		switch {
		case n > runtime.NumCPU():
			calm = time.Time{}
		case calm.IsZero():
			calm = time.Now()
		case time.Since(calm) >= settleWindow:
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readyTimeout is how long after the restart every pod has to be listed
// READY again; those that are not by then are counted as lost.
const readyTimeout = time.Minute

// restartTimeout bounds the whole recovery; a runtime that has not
// recovered by then is reported failed.
const restartTimeout = 5 * time.Minute

// restarted is what the restart command prints.
type restarted struct {
	PID        int   `json:"pid"`
	LaunchedNS int64 `json:"launched_ns"`
}

// restartDaemon restarts the daemon with *pods running (the runtime's
// restart command, runtimes/restart.sh: SIGTERM, then the same daemon
// launched again) and times, from the new daemon's launch, its first
// answer, every pod listed READY again, and a new pod running (added to
// *pods): what a node's upgrade of the runtime costs its pods and kubelet.
func restartDaemon(ctx context.Context, t *target.Target, cfg Config, mu *sync.Mutex, pods *[]*pod, rec Recorder) error {
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, t.Restart[0], t.Restart[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restart command: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var r restarted
	if err := json.Unmarshal(lastLine(out.Bytes()), &r); err != nil || r.PID <= 0 {
		return fmt.Errorf("restart command printed %q: want {\"pid\": N, \"launched_ns\": T}", out.String())
	}
	launched := time.Unix(0, r.LaunchedNS)
	rec.Record("restart.stop", ms(launched.Sub(t0)))

	// A new connection per attempt: an old one would wait out gRPC's
	// reconnect backoff.
	for {
		err := t.Reconnect(ctx, r.PID)
		if err == nil {
			if _, err = t.Runtime.Version(ctx, "v1"); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no answer after the restart: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec.Record("restart.answer", ms(time.Since(launched)))

	want := map[string]bool{}
	mu.Lock()
	for _, p := range *pods {
		want[p.id] = true
	}
	mu.Unlock()
	// A pod the restarted daemon lists NOTREADY, kubelet kills and starts
	// again: containerd 1.6, restarted after the burst, lost 6 of 110 that
	// way (their sandboxes' shims did not answer its recovery in time; the
	// containers ran on). Those are counted, and the restart goes on.
	readyBy, stopReady := context.WithTimeout(ctx, readyTimeout)
	defer stopReady()
	allReady := false
	for {
		ready, err := readyPods(readyBy, t, want)
		if err == nil && ready == len(want) {
			rec.Record("restart.ready", ms(time.Since(launched)))
			rec.Record("restart.lost", 0)
			allReady = true
			break
		}
		if readyBy.Err() != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%d of %d pods READY after the restart (%v): %w", ready, len(want), err, ctx.Err())
			}
			if ready, err = readyPods(ctx, t, want); err != nil {
				return fmt.Errorf("ListPodSandbox after the restart: %w", err)
			}
			rec.Record("restart.lost", float64(len(want)-ready))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	p, _, _, err := startPod(ctx, t, "restart-new", cfg.Image, sleepCmd)
	if p != nil {
		mu.Lock()
		*pods = append(*pods, p)
		mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("a new pod after the restart: %w", err)
	}
	if allReady { // else the time would be the wait for the lost pods'
		rec.Record("restart.newpod", ms(time.Since(launched)))
	}
	return nil
}

// readyPods counts the pods of want that ListPodSandbox lists READY.
func readyPods(ctx context.Context, t *target.Target, want map[string]bool) (int, error) {
	sandboxes, err := t.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{Label: "1"},
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range sandboxes {
		if want[s.Id] && s.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			n++
		}
	}
	return n, nil
}

// lastLine is the last non-empty line of b.
func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}
