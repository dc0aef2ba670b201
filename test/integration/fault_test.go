package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// The tests here kill berthd at the named points of internal/fault
// (docs/fault-points.md), restart it, and check what a crash at that
// instant leaves: the state berthd reports matches what runs, the
// interrupted object is completed by kubelet's retry or rolled back, and
// no host resource is left behind.

// faultEnv is a pod daemon after one warm-up pod, so that what stays for
// the daemon's life (the pause and busybox images, the bridge, the netns
// directory mount) is in the baseline.
type faultEnv struct {
	d      *harness.Daemon
	reg    *harness.Registry
	pn     harness.Net
	rt     internalapi.RuntimeService
	img    internalapi.ImageManagerService
	image  string
	logDir string
	before harness.Counts
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	d, reg, pn := newPodDaemon(t, "")
	harness.RequireFaultPoints(t, d.Binary())
	d.Start()
	d.WaitReady()
	e := &faultEnv{d: d, reg: reg, pn: pn, image: reg.Host + "/" + harness.BusyboxRepo, logDir: t.TempDir()}
	e.connect()
	if _, err := e.img.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod, _ := e.sync(t, "warm", "c", true)
	e.removeAll(t)
	if e.listed(t) != 0 || pod == "" {
		t.Fatal("warm-up left objects")
	}
	e.before = e.counts(t)
	return e
}

func (e *faultEnv) connect() {
	e.rt, e.img = e.d.RuntimeClient(), e.d.ImageClient()
}

// counts are the resource counts but berthd's fds, which belong to one
// process and so do not compare across restarts (the churn test checks
// them).
func (e *faultEnv) counts(t *testing.T) harness.Counts {
	c := e.d.Resources(e.pn)
	delete(c, "berthd fds")
	return c
}

func (e *faultEnv) podConfig(name string) *runtimeapi.PodSandboxConfig {
	c := podConfig(name)
	c.LogDirectory = e.logDir
	return c
}

func (e *faultEnv) containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		Command:  []string{"sleep", "1000"},
		LogPath:  name + ".log",
	}
}

// sync does what kubelet's pod sync does for a pod with one container,
// whatever state a crash left: reuse the pod's ready sandbox or run one
// (a new attempt if an old one is not ready), then start the container's
// created instance or create one (a new attempt after exited ones). A
// create kubelet gave up on is retried with the same name.
func (e *faultEnv) sync(t *testing.T, pod, ctr string, start bool) (podID, ctrID string) {
	t.Helper()
	ctx := context.Background()
	pcfg := e.podConfig(pod)
	pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": pod}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			podID = p.Id
		} else if p.Metadata.Attempt >= pcfg.Metadata.Attempt {
			pcfg.Metadata.Attempt = p.Metadata.Attempt + 1
		}
	}
	if podID == "" {
		if podID, err = e.rt.RunPodSandbox(ctx, pcfg, ""); err != nil {
			t.Fatalf("run pod %s: %v\n%s", pod, err, e.d.Logs)
		}
	}
	ccfg := e.containerConfig(ctr)
	// Attempts count across the pod's sandboxes, as kubelet's restart count.
	ctrs, err := e.rt.ListContainers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	state := runtimeapi.ContainerState_CONTAINER_UNKNOWN
	for _, c := range ctrs {
		if c.Metadata.Name != ctr {
			continue
		}
		switch {
		case c.PodSandboxId == podID && (c.State == runtimeapi.ContainerState_CONTAINER_CREATED || c.State == runtimeapi.ContainerState_CONTAINER_RUNNING):
			ctrID, state = c.Id, c.State
		default:
			if c.Metadata.Attempt >= ccfg.Metadata.Attempt {
				ccfg.Metadata.Attempt = c.Metadata.Attempt + 1
			}
		}
	}
	if ctrID == "" {
		if ctrID, err = e.rt.CreateContainer(ctx, podID, ccfg, pcfg); err != nil {
			t.Fatalf("create %s: %v\n%s", ctr, err, e.d.Logs)
		}
		state = runtimeapi.ContainerState_CONTAINER_CREATED
	}
	if start && state == runtimeapi.ContainerState_CONTAINER_CREATED {
		if err := e.rt.StartContainer(ctx, ctrID); err != nil {
			t.Fatalf("start %s: %v\n%s", ctr, err, e.d.Logs)
		}
	}
	return podID, ctrID
}

// crash restarts berthd armed at point, runs drive, which must make berthd
// die there, and restarts berthd unarmed.
func (e *faultEnv) crash(t *testing.T, point string, drive func(ctx context.Context) error) {
	t.Helper()
	e.d.Stop()
	e.d.Env = []string{"BERTH_FAULT=" + point}
	e.d.Start()
	e.d.Env = nil
	e.d.WaitReady()
	e.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := drive(ctx)
	select {
	case <-e.d.Exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("berthd did not die at %s (the RPC returned %v)\n%s", point, err, e.d.Logs)
	}
	if ws, ok := e.d.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("berthd ended with %v, not killed at %s\n%s", e.d.Cmd.ProcessState, point, e.d.Logs)
	}
	if err == nil {
		t.Errorf("the RPC that hit %s succeeded", point)
	}
	t.Logf("killed at %s: %v", point, err)
	e.d.Start()
	e.d.WaitReady()
	e.connect()
}

// listed is how many sandboxes and containers berthd lists.
func (e *faultEnv) listed(t *testing.T) int {
	t.Helper()
	pods, err := e.rt.ListPodSandbox(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := e.rt.ListContainers(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(pods) + len(ctrs)
}

// checkConsistent checks berthd's view against the processes: every ready
// sandbox's pause and every running container's process is alive, and the
// supervisor has no other child than those and the created containers'
// inits.
func (e *faultEnv) checkConsistent(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var why string
	ok := testsupport.Poll(15*time.Second, 50*time.Millisecond, func() bool {
		why = ""
		pods, err := e.rt.ListPodSandbox(ctx, nil)
		if err != nil {
			why = err.Error()
			return false
		}
		want := 0
		for _, p := range pods {
			if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
				continue
			}
			want++
			st, err := e.rt.PodSandboxStatus(ctx, p.Id, true)
			if err != nil || !alive(verbosePid(st.GetInfo())) {
				why = fmt.Sprintf("sandbox %s is ready, its pause is not running (%v)", p.Id, err)
				return false
			}
		}
		ctrs, err := e.rt.ListContainers(ctx, nil)
		if err != nil {
			why = err.Error()
			return false
		}
		for _, c := range ctrs {
			switch c.State {
			case runtimeapi.ContainerState_CONTAINER_CREATED:
				want++
			case runtimeapi.ContainerState_CONTAINER_RUNNING:
				want++
				st, err := e.rt.ContainerStatus(ctx, c.Id, true)
				if err != nil || !alive(verbosePid(st.GetInfo())) {
					why = fmt.Sprintf("container %s is running, its process is not (%v)", c.Id, err)
					return false
				}
			}
		}
		if got := len(e.d.SupervisedPIDs()); got != want {
			why = fmt.Sprintf("the supervisor has %d children, berthd lists %d ready pods and live containers", got, want)
			return false
		}
		return true
	})
	if !ok {
		t.Errorf("state inconsistent with what runs: %s\n%s", why, e.d.Logs)
	}
}

// removeAll stops and removes every container and sandbox, as kubelet
// does when the pods are deleted.
func (e *faultEnv) removeAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ctrs, _ := e.rt.ListContainers(ctx, nil)
	for _, c := range ctrs {
		if err := e.rt.StopContainer(ctx, c.Id, 0); err != nil {
			t.Errorf("stop container %s: %v", c.Id, err)
		}
		if err := e.rt.RemoveContainer(ctx, c.Id); err != nil {
			t.Errorf("remove container %s: %v", c.Id, err)
		}
	}
	pods, _ := e.rt.ListPodSandbox(ctx, nil)
	for _, p := range pods {
		if err := e.rt.StopPodSandbox(ctx, p.Id); err != nil {
			t.Errorf("stop pod %s: %v", p.Id, err)
		}
		if err := e.rt.RemovePodSandbox(ctx, p.Id); err != nil {
			t.Errorf("remove pod %s: %v", p.Id, err)
		}
	}
}

// checkNoLeak removes everything and compares the resources with the
// baseline (polled: a dying process frees its cgroup a moment later).
func (e *faultEnv) checkNoLeak(t *testing.T) {
	t.Helper()
	e.removeAll(t)
	var after harness.Counts
	if !testsupport.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		after = e.counts(t)
		return after.String() == e.before.String()
	}) {
		t.Errorf("resources leaked:\nbefore %s\nafter  %s\n%s", e.before, after, e.d.Logs)
	}
}

func verbosePid(info map[string]string) int {
	var v struct {
		Pid int `json:"pid"`
	}
	json.Unmarshal([]byte(info["info"]), &v)
	return v.Pid
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// TestFaultSandboxAfterCNIAdd pins a bug: the roll-back of a sandbox whose
// CNI ADD had run but was not yet recorded skipped CNI DEL, leaking the
// pod's IP allocation.
func TestFaultSandboxAfterCNIAdd(t *testing.T) {
	e := newFaultEnv(t)
	e.crash(t, "sandbox.after-cni-add", func(ctx context.Context) error {
		_, err := e.rt.RunPodSandbox(ctx, e.podConfig("web"), "")
		return err
	})
	if !e.d.Logs.Contains("rolling back a sandbox whose creation was interrupted") {
		t.Errorf("no roll-back logged:\n%s", e.d.Logs)
	}
	if n := e.listed(t); n != 0 {
		t.Errorf("%d objects listed after the roll-back", n)
	}
	e.checkConsistent(t)
	// Nothing of the interrupted sandbox stays (IP, veth, netns, pause).
	if after := e.counts(t); after.Differ(e.before) {
		t.Errorf("after the roll-back:\nbefore %s\nafter  %s", e.before, after)
	}
	// kubelet's retry gets a working pod.
	pod, _ := e.sync(t, "web", "c", true)
	st, err := e.rt.PodSandboxStatus(context.Background(), pod, false)
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || !strings.HasPrefix(st.Status.Network.GetIp(), e.pn.Prefix) {
		t.Errorf("retried pod: %+v %v", st, err)
	}
	e.checkConsistent(t)
	e.checkNoLeak(t)
}

func TestFaultContainerCreate(t *testing.T) {
	for _, point := range []string{"container.after-snapshot-prepare", "container.after-create"} {
		t.Run(point, func(t *testing.T) {
			e := newFaultEnv(t)
			pod, err := e.rt.RunPodSandbox(context.Background(), e.podConfig("web"), "")
			if err != nil {
				t.Fatal(err)
			}
			e.crash(t, point, func(ctx context.Context) error {
				_, err := e.rt.CreateContainer(ctx, pod, e.containerConfig("app"), e.podConfig("web"))
				return err
			})
			// The rootfs is made while the first record is written: a crash
			// there may come before the record (its rootfs and bundle are
			// then swept as orphans) or after it (rolled back).
			if !e.d.Logs.Contains("rolling back a container whose creation was interrupted") &&
				!(point == "container.after-snapshot-prepare" && e.d.Logs.Contains("removed a root filesystem no sandbox or container owns")) {
				t.Errorf("no roll-back logged:\n%s", e.d.Logs)
			}
			if ctrs, _ := e.rt.ListContainers(context.Background(), nil); len(ctrs) != 0 {
				t.Errorf("containers listed after the roll-back: %v", ctrs)
			}
			e.checkConsistent(t)
			// kubelet's retry: same names, a clean new container that runs.
			if again, ctr := e.sync(t, "web", "app", true); again != pod {
				t.Errorf("the pod's retry got %s, want %s", again, pod)
			} else if st, err := e.rt.ContainerStatus(context.Background(), ctr, false); err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("retried container: %+v %v", st, err)
			}
			e.checkConsistent(t)
			e.checkNoLeak(t)
		})
	}
}

func TestFaultContainerBeforeStart(t *testing.T) {
	e := newFaultEnv(t)
	pod, ctr := e.sync(t, "web", "app", false)
	e.crash(t, "container.before-start", func(ctx context.Context) error {
		return e.rt.StartContainer(ctx, ctr)
	})
	ctx := context.Background()
	st, err := e.rt.ContainerStatus(ctx, ctr, false)
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("after the crash: %+v %v", st, err)
	}
	e.checkConsistent(t)
	// kubelet's retry starts the same container.
	if again, ctr2 := e.sync(t, "web", "app", true); again != pod || ctr2 != ctr {
		t.Errorf("retry got pod %s container %s, want %s %s", again, ctr2, pod, ctr)
	}
	if st, err := e.rt.ContainerStatus(ctx, ctr, false); err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the retry: %+v %v", st, err)
	}
	e.checkConsistent(t)
	e.checkNoLeak(t)
}

func TestFaultImagePull(t *testing.T) {
	for _, point := range []string{"image.mid-layer-download", "snapshot.mid-unpack"} {
		t.Run(point, func(t *testing.T) {
			e := newFaultEnv(t)
			e.reg.Push(t, "fault/app", "v1", 3)
			ref := e.reg.Host + "/fault/app:v1"
			e.crash(t, point, func(ctx context.Context) error {
				_, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil)
				return err
			})
			ctx := context.Background()
			if st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err != nil || st.Image != nil {
				t.Errorf("a half-pulled image is listed: %+v %v", st, err)
			}
			if after := e.counts(t); after.Differ(e.before) {
				t.Errorf("after the crash:\nbefore %s\nafter  %s", e.before, after)
			}
			// kubelet's retry pulls it whole.
			if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil); err != nil {
				t.Fatalf("retried pull: %v\n%s", err, e.d.Logs)
			}
			if err := e.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: ref}); err != nil {
				t.Fatal(err)
			}
			e.checkNoLeak(t)
		})
	}
}

// TestFaultStateWrite kills berthd in the middle of its Nth atomic state
// write (temp file written and synced, not renamed) while kubelet syncs a
// pod, for a few N spread over the work of a pod and its container.
func TestFaultStateWrite(t *testing.T) {
	e := newFaultEnv(t)
	for _, n := range []int{3, 7, 11, 14, 17, 21, 25} {
		point := fmt.Sprintf("state.mid-write@%d", n)
		// About 18 writes a cycle, their order varying with the race
		// between CNI ADD and the pause start: three cycles reach every N.
		e.crash(t, point, func(ctx context.Context) error {
			for range 3 {
				pod, err := e.rt.RunPodSandbox(ctx, e.podConfig("web"), "")
				if err != nil {
					return err
				}
				ctr, err := e.rt.CreateContainer(ctx, pod, e.containerConfig("app"), e.podConfig("web"))
				if err != nil {
					return err
				}
				if err := e.rt.StartContainer(ctx, ctr); err != nil {
					return err
				}
				if err := e.rt.StopPodSandbox(ctx, pod); err != nil {
					return err
				}
				if err := e.rt.RemovePodSandbox(ctx, pod); err != nil {
					return err
				}
			}
			return nil
		})
		pods, _ := e.rt.ListPodSandbox(context.Background(), nil)
		ctrs, _ := e.rt.ListContainers(context.Background(), nil)
		t.Logf("after %s: %d pods, %d containers", point, len(pods), len(ctrs))
		e.checkConsistent(t)
		// kubelet's retry brings the pod up whatever was interrupted.
		e.sync(t, "web", "app", true)
		e.checkConsistent(t)
		e.checkNoLeak(t)
		if t.Failed() {
			t.Fatalf("at %s", point)
		}
	}
}
