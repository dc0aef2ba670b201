package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

var execFigures = []Figure{
	{ID: "exec.sync", Title: "ExecSync /bin/true round trip", Unit: "ms", Floor: "exec.floor"},
	{ID: "exec.floor", Title: "  floor: nsenter into the container's namespaces + exec /bin/true, from fork to exit", Unit: "ms"},
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
	pid int // the container's process, for the floor
}

func (w *execSync) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	p, ctr, _, err := startPod(ctx, t, "exec", w.cfg.Image, sleepCmd)
	w.pod, w.ctr = p, ctr
	if err != nil {
		return err
	}
	w.pid, err = containerPID(ctx, t, ctr)
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
	// The floor after the calls, so that its processes are not counted
	// in the runtime's CPU (they are not its children anyway).
	for range n {
		d, err := nsenterTrue(ctx, w.pid)
		if err != nil {
			return fmt.Errorf("exec floor: %w", err)
		}
		rec.Record("exec.floor", ms(d))
	}
	return nil
}

// nsenterTrue runs /bin/true in the mount, UTS, IPC, network and pid
// namespaces of process pid, as an exec into its container does, and
// times it from fork to exit: the least an ExecSync can cost, without the
// RPC, the runtime's bookkeeping, cgroup, capabilities or seccomp.
func nsenterTrue(ctx context.Context, pid int) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "-u", "-i", "-n", "-p", "/bin/true")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("nsenter -t %d: %w: %s", pid, err, out)
	}
	return d, nil
}

// containerPID is the host pid of a container's process, from the
// verbose ContainerStatus: the "pid" of its "info" JSON (berthd,
// containerd, CRI-O), or a plain "pid" entry.
func containerPID(ctx context.Context, t *target.Target, ctr string) (int, error) {
	st, err := t.Runtime.ContainerStatus(ctx, ctr, true)
	if err != nil {
		return 0, fmt.Errorf("ContainerStatus: %w", err)
	}
	for k, v := range st.GetInfo() {
		if k == "pid" {
			if pid, err := strconv.Atoi(v); err == nil && pid > 0 {
				return pid, nil
			}
		}
		var info struct {
			PID int `json:"pid"`
		}
		if json.Unmarshal([]byte(v), &info) == nil && info.PID > 0 {
			return info.PID, nil
		}
	}
	return 0, fmt.Errorf("ContainerStatus of %s: no pid in its verbose info", ctr)
}

func (w *execSync) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, []*pod{w.pod})
}
