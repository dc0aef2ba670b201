package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// TestSupervisorCrashLosesNothing kills the supervisor with SIGKILL and
// keeps the next one from serving for over a second, with containers
// ending before, during and after that outage: every exit code, reason
// and finish time is what happened (the keeper reaped and recorded what
// ended meanwhile) and every log line is there once, also the lines a
// container wrote during the outage just before it ended. The same again
// with berthd killed at the same instant.
func TestSupervisorCrashLosesNothing(t *testing.T) {
	for _, killBerthd := range []bool{false, true} {
		t.Run(fmt.Sprintf("berthd_killed=%v", killBerthd), func(t *testing.T) {
			testSupervisorCrash(t, killBerthd)
		})
	}
}

func testSupervisorCrash(t *testing.T, killBerthd bool) {
	e := newPodEnv(t, "keeper")
	ctx := context.Background()
	// The containers wait for gates (files the test makes in a mounted
	// directory) to end in the outage or after it, whatever the load.
	gate := t.TempDir()
	open := func(name string) {
		if err := os.WriteFile(filepath.Join(gate, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh := func(name, script string) *runtimeapi.ContainerConfig {
		cfg := e.containerConfig(name, "sh", "-c", script)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/gate", HostPath: gate, Readonly: true}}
		return cfg
	}
	before := e.run(t, sh("before", "echo b0; echo b1; exit 7"))
	e.waitExit(t, before)
	t0 := time.Now()
	during := e.run(t, sh("during", "echo d0; until [ -e /gate/during ]; do sleep 0.02; done; echo d1; echo d2 >&2; exit 3"))
	killed := e.run(t, sh("killed", "echo k0; exec sleep 1000"))
	after := e.run(t, sh("after", `i=0; until [ -e /gate/after ]; do echo line$i; i=$((i+1)); sleep 0.05; done; exit 5`))
	st, err := e.rt.ContainerStatus(ctx, killed, true)
	if err != nil {
		t.Fatal(err)
	}
	killedPid := infoPid(t, st.Info["info"])

	keeper, sup := e.d.KeeperPID(), supervisorPid(t, e.d)
	if keeper == 0 {
		t.Fatalf("no keeper above the supervisor: %s", e.d.DescribeSupervisors())
	}
	if killBerthd {
		e.d.Cmd.Process.Signal(syscall.SIGKILL)
		<-e.d.Exited
	}
	crash := time.Now()
	end := testsupport.CrashSupervisor(t, filepath.Join(e.d.Dir, "run"), keeper, sup)
	open("during")
	time.Sleep(300 * time.Millisecond)
	killedAt := time.Now()
	syscall.Kill(killedPid, syscall.SIGKILL)
	time.Sleep(time.Second)
	outageEnd := time.Now()
	end()
	if killBerthd {
		e.d.Start()
		e.d.WaitReady()
		e.rt = e.d.RuntimeClient()
	}
	// After a supervisor answers again: berthd's start waits for one.
	harness.WaitFor(t, "a supervisor", 20*time.Second, func() bool { return e.d.SupervisorPID() != 0 })
	open("after")

	check := func(name, id string, code int32, from, to time.Time, stdout, stderr []string) {
		t.Helper()
		st := e.waitExit(t, id)
		fin := time.Unix(0, st.FinishedAt)
		if st.ExitCode != code || st.Reason != "Error" || fin.Before(from) || fin.After(to) {
			t.Errorf("%s: exit %d reason %q finished %v, want %d, Error, finished in [%v, %v]", name, st.ExitCode, st.Reason, fin, code, from, to)
		}
		// Per stream: the two are read apart, so they may interleave
		// either way in the file.
		var out, errs []string
		for _, l := range logLines(t, st.LogPath) {
			if m, ok := strings.CutPrefix(l, "stdout "); ok {
				out = append(out, m)
			} else if m, ok := strings.CutPrefix(l, "stderr "); ok {
				errs = append(errs, m)
			}
		}
		if !slices.Equal(out, stdout) || !slices.Equal(errs, stderr) {
			t.Errorf("%s: stdout %q stderr %q, want %q and %q", name, out, errs, stdout, stderr)
		}
	}
	check("before", before, 7, time.Time{}, t0, []string{"b0", "b1"}, nil)
	check("during", during, 3, crash, outageEnd, []string{"d0", "d1"}, []string{"d2"})
	check("killed", killed, 137, killedAt, outageEnd, []string{"k0"}, nil)
	// Numbered lines from before, during and after the outage, each once.
	n := len(logLines(t, e.waitExit(t, after).LogPath))
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("line%d", i))
	}
	check("after", after, 5, outageEnd, time.Now(), lines, nil)
	if killBerthd {
		return
	}
	if n := e.d.KeeperPID(); n != keeper {
		t.Errorf("keeper %d after the crash, was %d", n, keeper)
	}
}

// TestSupervisorCrashBlastRadius: 50 running containers, of which 10 end
// during a supervisor outage (kill -9, the next supervisor held off for two
// seconds) and 40 after it: every exit code, finish time and log line
// exact. Each container writes a numbered line every 0.1 s until the test
// opens its gate (a file in a mounted directory), then an end line, and
// exits with a code of its own. The keeper's and the supervisor's memory
// are logged.
func TestSupervisorCrashBlastRadius(t *testing.T) {
	const during, after = 10, 40
	e := newPodEnv(t, "blast")
	gate := t.TempDir()
	config := func(name string, i int, door string) *runtimeapi.ContainerConfig {
		cfg := e.containerConfig(name, "sh", "-c", fmt.Sprintf(
			`i=0; while [ ! -e /gate/%s ]; do echo c%d-$i; i=$((i+1)); sleep 0.1; done; echo c%d-end; exit %d`, door, i, i, i+1))
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/gate", HostPath: gate, Readonly: true}}
		return cfg
	}
	ids := make([]string, during+after)
	for i := range ids {
		name, door := fmt.Sprintf("during%d", i), "during"
		if i >= during {
			name, door = fmt.Sprintf("after%d", i), "after"
		}
		ids[i] = e.run(t, config(name, i, door))
	}
	keeper, sup := e.d.KeeperPID(), supervisorPid(t, e.d)
	t.Logf("%d containers: supervisor RSS %d KiB, keeper RSS %d KiB", len(ids),
		harness.ProcStatus(sup, "VmRSS"), harness.ProcStatus(keeper, "VmRSS"))
	crash := time.Now()
	end := testsupport.CrashSupervisor(t, filepath.Join(e.d.Dir, "run"), keeper, sup)
	if err := os.WriteFile(filepath.Join(gate, "during"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	outageEnd := time.Now()
	end()
	if err := os.WriteFile(filepath.Join(gate, "after"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		st := e.waitExit(t, id)
		fin := time.Unix(0, st.FinishedAt)
		from, to := crash, outageEnd
		if i >= during {
			from, to = outageEnd, time.Now()
		}
		if st.ExitCode != int32(i+1) || st.Reason != "Error" || fin.Before(from) || fin.After(to) {
			t.Errorf("container %d: exit %d reason %q finished %v, want %d, Error, in [%v, %v]", i, st.ExitCode, st.Reason, fin, i+1, from, to)
		}
		got := logLines(t, st.LogPath)
		ok := len(got) > 1 && got[len(got)-1] == fmt.Sprintf("stdout c%d-end", i)
		for j := 0; ok && j < len(got)-1; j++ {
			ok = got[j] == fmt.Sprintf("stdout c%d-%d", i, j)
		}
		if !ok {
			t.Errorf("container %d: log %q, want numbered lines and an end", i, got)
		}
	}
	if s := e.d.SupervisorPID(); s != 0 {
		t.Logf("after: supervisor RSS %d KiB, keeper RSS %d KiB", harness.ProcStatus(s, "VmRSS"), harness.ProcStatus(e.d.KeeperPID(), "VmRSS"))
	}
}
