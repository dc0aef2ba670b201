package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// TestExecSyncBigEnvironment: exec probes work in a container with 1.5 MiB
// of environment (issue 17: berthd sent the whole process, environment
// included, to the supervisor with every probe, and the supervisor's 1 MiB
// request cap refused it, while CreateContainer had accepted it).
func TestExecSyncBigEnvironment(t *testing.T) {
	e := newPodEnv(t, "bigenv")
	cfg := e.containerConfig("bigenv", "sleep", "1000")
	for i := range 1536 {
		cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: fmt.Sprintf("BIG_%04d", i), Value: []byte(strings.Repeat("x", 1014))})
	}
	cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: "PROBE", Value: []byte("ok")})
	id := e.run(t, cfg)
	for range 3 { // a probe runs again and again
		stdout, stderr, err := e.rt.ExecSync(context.Background(), id, []string{"sh", "-c", `echo $PROBE ${#BIG_1535}`}, 0)
		if err != nil || string(stdout) != "ok 1014\n" {
			t.Fatalf("ExecSync: %v, stdout %q, stderr %q\n%s", err, stdout, stderr, e.d.Logs)
		}
	}
}

// TestDeadPauseIsNoticed: a pod whose pause process dies (the OOM killer,
// kill -9) is NOTREADY at once, with the stopped event kubelet's evented
// PLEG acts on, refuses new containers (they would join a dead process's
// namespaces, or after pid reuse another process's), and kubelet's usual
// recovery works: stop, remove, RunPodSandbox again (issue 17: the sandbox
// stayed READY and kubelet never recreated the pod).
func TestDeadPauseIsNoticed(t *testing.T) {
	e := newPodEnv(t, "deadpause")
	ctx := context.Background()
	e.run(t, e.containerConfig("sleeper", "sleep", "1000"))
	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan *runtimeapi.ContainerEventResponse, 100)
	connected := make(chan struct{})
	go e.rt.GetContainerEvents(evCtx, events, func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(connected) })
	<-connected

	pausePid := e.pausePid(t)
	if err := syscall.Kill(pausePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	harness.WaitFor(t, "the sandbox to be NOTREADY", time.Second, func() bool {
		st, err := e.rt.PodSandboxStatus(ctx, e.pod, false)
		return err == nil && st.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	t.Logf("NOTREADY %v after the kill", time.Since(killed).Round(time.Millisecond))
	deadline := time.After(5 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-events:
			seen = ev.ContainerId == e.pod && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT &&
				ev.PodSandboxStatus.GetState() == runtimeapi.PodSandboxState_SANDBOX_NOTREADY && ev.PodSandboxStatus.GetMetadata().GetUid() == e.podCfg.Metadata.Uid
		case <-deadline:
			t.Fatal("no CONTAINER_STOPPED_EVENT for the sandbox with a NOTREADY status")
		}
	}

	_, err := e.rt.CreateContainer(ctx, e.pod, e.containerConfig("late", "sleep", "1000"), e.podCfg)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CreateContainer in a sandbox whose pause died: %v, want FailedPrecondition", err)
	}

	// What kubelet does with a dead sandbox: stop, remove, run the next attempt.
	if err := e.rt.StopPodSandbox(ctx, e.pod); err != nil {
		t.Fatalf("StopPodSandbox: %v\n%s", err, e.d.Logs)
	}
	if err := e.rt.RemovePodSandbox(ctx, e.pod); err != nil {
		t.Fatalf("RemovePodSandbox: %v\n%s", err, e.d.Logs)
	}
	e.podCfg.Metadata.Attempt++
	pod, err := e.rt.RunPodSandbox(ctx, e.podCfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox again: %v\n%s", err, e.d.Logs)
	}
	e.pod = pod
	t.Cleanup(func() {
		e.rt.StopPodSandbox(context.Background(), pod)
		e.rt.RemovePodSandbox(context.Background(), pod)
	})
	id := e.run(t, e.containerConfig("again", "sleep", "1000"))
	if resp, err := e.rt.ContainerStatus(ctx, id, false); err != nil || resp.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container in the new sandbox: %v %v", resp.GetStatus().GetState(), err)
	}
}

// TestDeadPauseNoticedAfterRestart: a restarted berthd watches the pauses
// of the pods it recovered as closely as those it started.
func TestDeadPauseNoticedAfterRestart(t *testing.T) {
	e := newPodEnv(t, "deadpause2")
	ctx := context.Background()
	pausePid := e.pausePid(t)
	e.d.Stop()
	e.d.Start()
	e.d.WaitReady()
	e.rt = e.d.RuntimeClient()
	if st, err := e.rt.PodSandboxStatus(ctx, e.pod, false); err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandbox after the restart: %v %v", st.GetStatus().GetState(), err)
	}
	if err := syscall.Kill(pausePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the recovered sandbox to be NOTREADY", time.Second, func() bool {
		st, err := e.rt.PodSandboxStatus(ctx, e.pod, false)
		return err == nil && st.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	// Now, while this daemon runs (the pod's own cleanup comes after the
	// restarted daemon's).
	if err := e.rt.StopPodSandbox(ctx, e.pod); err != nil {
		t.Error(err)
	}
	if err := e.rt.RemovePodSandbox(ctx, e.pod); err != nil {
		t.Error(err)
	}
}

// pausePid is the pid of the pod's pause, as crictl inspectp shows it.
func (e *podEnv) pausePid(t *testing.T) int {
	t.Helper()
	st, err := e.rt.PodSandboxStatus(context.Background(), e.pod, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Pid int }
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("pause pid from %q: %v", st.Info["info"], err)
	}
	return info.Pid
}

// TestRuntimeDefaultSeccomp: a container under RuntimeDefault (moby's
// default profile, issue 17) runs with the filter loaded by this host's
// runc libraries, and ordinary calls, inet sockets included (their rules
// filter on the address family), work.
func TestRuntimeDefaultSeccomp(t *testing.T) {
	e := newPodEnv(t, "seccomp")
	cfg := e.containerConfig("filtered", "sh", "-c", `grep '^Seccomp:' /proc/self/status; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo inet-ok`)
	cfg.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	id := e.run(t, cfg)
	if st := e.waitExit(t, id); st.ExitCode != 0 {
		t.Errorf("exit %d (%s)", st.ExitCode, st.Reason)
	}
	lines := logLines(t, filepath.Join(e.podCfg.LogDirectory, "filtered.log"))
	if !slices.Equal(lines, []string{"stdout Seccomp:\t2", "stdout inet-ok"}) {
		t.Errorf("output %q, want the filter mode (2) and inet-ok", lines)
	}
}
