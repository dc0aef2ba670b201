package stress

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// ids remembers every sandbox and container id a test made, to count the
// cgroups named after them (other berthds on the host make their own).
type ids struct{ m sync.Map }

func (s *ids) add(id string) { s.m.Store(id, true) }

// count is the daemon's resource counts, with only the cgroups of seen's
// ids, and berthd's and its supervisor's threads, memory and goroutines.
func (d *daemon) count(seen *ids) harness.Counts {
	c := d.Resources(d.net)
	c["cgroups"] = 0
	seen.m.Range(func(k, _ any) bool {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory/berth", k.(string))); err == nil {
			c["cgroups"]++
		}
		return true
	})
	pid := d.Cmd.Process.Pid
	c["berthd threads"] = harness.ProcStatus(pid, "Threads")
	c["berthd RSS MiB"] = harness.ProcStatus(pid, "VmRSS") / 1024
	c["berthd goroutines"] = d.goroutines()
	if sup := d.SupervisorPID(); sup != 0 {
		c["supervisor fds"] = harness.CountFDs(sup)
		c["supervisor threads"] = harness.ProcStatus(sup, "Threads")
	}
	// The keeper holds each container's output FIFOs until its output
	// ends or it is deleted: a leaked hold shows here.
	if k := d.KeeperPID(); k != 0 {
		c["keeper fds"] = harness.CountFDs(k)
	}
	return c
}

// slack is how far each count may stay above its start after the churn:
// none for what pods own; a little for what a Go process keeps (threads
// are never given back, the heap is returned lazily). A thread is made for
// each call blocked in a syscall at once, so the peak is bounded by the 20
// calls in flight, not by the cycle count, and one warm-up burst does not
// always reach it: the supervisor went from 10 to 19 once in CI. A leak of
// one per cycle would show 100.
var slack = map[string]int{
	"berthd fds": 5, "berthd threads": 20, "berthd RSS MiB": 24, "berthd goroutines": 10,
	"supervisor fds": 5, "supervisor threads": 20, "keeper fds": 2,
}

// within reports whether after is back within slack of before.
func within(before, after harness.Counts) bool {
	for k, b := range before {
		if after[k] > b+slack[k] {
			return false
		}
	}
	return true
}

func churnCount(t *testing.T) int {
	if v := os.Getenv("BERTH_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BERTH_CHURN=%q", v)
		}
		return n
	}
	return 100
}

// churner runs kubelet-like pod lifecycles: run a sandbox, create and
// start a container, stop the container, remove it, stop and remove the
// sandbox.
type churner struct {
	d      *daemon
	seen   *ids
	logDir string
	seq    atomic.Int64
}

func (c *churner) cycle(ctx context.Context) error {
	n := c.seq.Add(1)
	name := fmt.Sprintf("churn-%d", n)
	pcfg := podConfig(name, 0, c.logDir)
	pod, err := c.d.rt.RunPodSandbox(ctx, pcfg, "")
	if err != nil {
		return fmt.Errorf("%s: run pod: %w", name, err)
	}
	c.seen.add(pod)
	ctr, err := c.d.rt.CreateContainer(ctx, pod, c.d.containerConfig("app", "sleep", "3600"), pcfg)
	if err != nil {
		return fmt.Errorf("%s: create: %w", name, err)
	}
	c.seen.add(ctr)
	if err := c.d.rt.StartContainer(ctx, ctr); err != nil {
		return fmt.Errorf("%s: start: %w", name, err)
	}
	if err := c.d.rt.StopContainer(ctx, ctr, 0); err != nil {
		return fmt.Errorf("%s: stop: %w", name, err)
	}
	if err := c.d.rt.RemoveContainer(ctx, ctr); err != nil {
		return fmt.Errorf("%s: remove: %w", name, err)
	}
	if err := c.d.rt.StopPodSandbox(ctx, pod); err != nil {
		return fmt.Errorf("%s: stop pod: %w", name, err)
	}
	if err := c.d.rt.RemovePodSandbox(ctx, pod); err != nil {
		return fmt.Errorf("%s: remove pod: %w", name, err)
	}
	return nil
}

// run does n cycles with inFlight at once and returns the errors.
func (c *churner) run(ctx context.Context, n, inFlight int) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := c.cycle(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// TestChurn runs BERTH_CHURN (default 100) pod lifecycles, 20 in flight,
// as kubelet does on a busy node, and checks that every resource a pod
// uses is back to its count before, and berthd's own within a small slack.
func TestChurn(t *testing.T) {
	needStress(t)
	n := churnCount(t)
	d := newDaemon(t)
	ctx := context.Background()
	if _, err := d.img.PullImage(ctx, d.containerConfig("x").Image, nil, nil); err != nil {
		t.Fatal(err)
	}
	c := &churner{d: d, seen: &ids{}, logDir: t.TempDir()}
	// Warm-up at full concurrency: the threads and heap a burst of 20 needs
	// are kept by the Go runtime and belong in the baseline.
	if errs := c.run(ctx, 20, 20); len(errs) > 0 {
		t.Fatalf("warm-up: %v\n%s", errs[0], d.Logs)
	}
	var before harness.Counts
	harness.WaitFor(t, "a steady baseline", 30*time.Second, func() bool {
		before = d.count(c.seen)
		return before["supervised processes"] == 0
	})
	start := time.Now()
	errs := c.run(ctx, n, 20)
	elapsed := time.Since(start)
	for i, err := range errs {
		if i == 5 {
			t.Errorf("... %d errors in all", len(errs))
			break
		}
		t.Error(err)
	}
	var after harness.Counts
	ok := testsupport.Poll(30*time.Second, 250*time.Millisecond, func() bool {
		after = d.count(c.seen)
		return within(before, after)
	})
	fmt.Printf("churn: %d pod cycles (run, create, start, stop, remove), 20 in flight, in %s (%.1f/s), %d errors\n",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), len(errs))
	fmt.Printf("churn: before %s\nchurn: after  %s\n", before, after)
	if !ok {
		t.Errorf("resources not back after %d cycles:\nbefore %s\nafter  %s", n, before, after)
	}
}
