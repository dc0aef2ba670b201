package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

func TestOOMKills(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  uint64
	}{
		{"v2 no kill", map[string]string{"memory.events": "low 0\nhigh 12\nmax 40\noom 0\noom_kill 0\noom_group_kill 0\n"}, 0},
		{"v2 one process killed", map[string]string{"memory.events": "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n"}, 1},
		// memory.oom.group=1: every task killed, and the group kill counted.
		{"v2 group kill", map[string]string{"memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 3\noom_group_kill 1\n"}, 4},
		// Kernels before 5.17 have no oom_group_kill line.
		{"v2 before oom_group_kill", map[string]string{"memory.events": "low 0\nhigh 0\nmax 1\noom 1\noom_kill 2\n"}, 2},
		{"v1", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"}, 1},
		{"v1 no kill", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"}, 0},
		// v1 before 4.13 counts no kills.
		{"v1 without a counter", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"}, 0},
		{"cgroup gone", nil, 0},
		{"garbage", map[string]string{"memory.events": "oom_kill x\noom_killer 5\n"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := oomKills(dir); got != tt.want {
				t.Errorf("oomKills = %d, want %d", got, tt.want)
			}
		})
	}
	if got := oomKills(""); got != 0 {
		t.Errorf("no cgroup: %d", got)
	}
}

// wait statuses as wait4 fills them.
func exited(code int) unix.WaitStatus          { return unix.WaitStatus(code << 8) }
func signaled(sig unix.Signal) unix.WaitStatus { return unix.WaitStatus(sig) }

func TestExitFromStatus(t *testing.T) {
	tests := []struct {
		name   string
		ws     unix.WaitStatus
		ooms   uint64
		code   int32
		reason string
	}{
		{"completed", exited(0), 0, 0, v1.ReasonCompleted},
		{"failed", exited(3), 0, 3, v1.ReasonError},
		// A child was OOM killed, and the init exited on its own: the
		// container failed, it was not OOM killed.
		{"child killed, init exited", exited(1), 1, 1, v1.ReasonError},
		{"completed after a child was killed", exited(0), 1, 0, v1.ReasonCompleted},
		// One kill counted and the init SIGKILLed: OOMKilled, whether the
		// kill was the init's or a child's (other processes may survive
		// without memory.oom.group; the init's SIGKILL came with it).
		{"init OOM killed", signaled(unix.SIGKILL), 1, 137, v1.ReasonOOMKilled},
		{"group kill", signaled(unix.SIGKILL), 4, 137, v1.ReasonOOMKilled},
		{"SIGKILL without OOM", signaled(unix.SIGKILL), 0, 137, v1.ReasonError},
		{"SIGTERM after an OOM kill", signaled(unix.SIGTERM), 1, 143, v1.ReasonError},
	}
	at := time.Unix(100, 5)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := exitFromStatus(tt.ws, at, tt.ooms)
			if e.ExitCode != tt.code || e.Reason != tt.reason || e.OOMKilled != (tt.reason == v1.ReasonOOMKilled) || e.FinishedAt != at.UnixNano() {
				t.Errorf("exit = %+v, want code %d reason %s", e, tt.code, tt.reason)
			}
		})
	}
}
