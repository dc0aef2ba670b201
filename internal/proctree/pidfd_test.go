package proctree

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// environHas reports whether pid's environment holds entry.
func environHas(pid int, entry string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return err == nil && strings.Contains("\x00"+string(b), "\x00"+entry+"\x00")
}

func startSleep(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Until it has executed sleep, the child shows the test's environment.
	if len(env) > 0 {
		testsupport.PollUntil(t, "sleep's environment", 5*time.Second, func() bool { return environHas(cmd.Process.Pid, env[0]) })
	}
	return cmd
}

// startAtPid starts sleep at pid, which must be free, by setting the
// kernel's last pid just below it (root only; other processes forking
// meanwhile can take it, hence the retries).
func startAtPid(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	for range 50 {
		err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(fmt.Sprint(pid-1)), 0)
		testsupport.Require(t, err == nil, "cannot steer pids: %v", err)
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return cmd
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	// skip: chance (other processes took the pid each time)
	t.Skip("could not get the pid reused")
	return nil
}

// TestSignalIfReusedPid pins issue 17 item 6: berthd found an orphaned CNI
// plugin by its environment, then killed the pid; had the plugin exited
// and its pid been reused in between, the kill hit an unrelated process.
// SignalIf checks the process behind a pidfd and leaves the newcomer be.
func TestSignalIfReusedPid(t *testing.T) {
	const mark = "CNI_CONTAINERID=pod1"
	plugin := startSleep(t, mark)
	pid := plugin.Process.Pid
	plugin.Process.Kill()
	plugin.Wait() // the plugin exits between berthd's scan and its kill
	other := startAtPid(t, pid)

	err := SignalIf(pid, unix.SIGKILL, func() bool { return environHas(pid, mark) })
	if !errors.Is(err, ErrNotSame) {
		t.Errorf("SignalIf = %v, want ErrNotSame", err)
	}
	time.Sleep(50 * time.Millisecond)
	if unix.Kill(other.Process.Pid, 0) != nil || !running(other.Process.Pid) {
		t.Fatal("the process that reused the pid was killed")
	}

	// The real plugin is killed; a gone pid is no error.
	victim := startSleep(t, mark)
	if err := SignalIf(victim.Process.Pid, unix.SIGKILL, func() bool { return environHas(victim.Process.Pid, mark) }); err != nil {
		t.Fatal(err)
	}
	if err := victim.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("plugin: %v, want killed", err)
	}
	if err := SignalIf(victim.Process.Pid, unix.SIGKILL, func() bool { return true }); err != nil {
		t.Errorf("gone pid: %v", err)
	}
}

// running: pid exists and is not a zombie.
func running(pid int) bool {
	_, ok := StartTime(pid)
	return ok
}

// TestKillTree: the root and every descendant are killed (through pidfds).
func TestKillTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	root := cmd.Process.Pid
	var tree []int
	if !testsupport.Poll(5*time.Second, 5*time.Millisecond, func() bool { tree = descendantPids(root); return len(tree) >= 3 }) {
		t.Fatalf("tree never grew: %v", tree)
	}
	Kill(root)
	cmd.Wait()
	alive := 0
	if !testsupport.Poll(5*time.Second, 5*time.Millisecond, func() bool {
		alive = 0
		for _, pid := range tree[1:] {
			if running(pid) {
				alive++
			}
		}
		return alive == 0
	}) {
		t.Fatalf("%d of %v still run", alive, tree)
	}
}

func descendantPids(root int) []int {
	var out []int
	for _, m := range descendantsWithParent(root) {
		out = append(out, m.pid)
	}
	return out
}

// TestSignalMembersReusedPid: the supervisor's kill of all a container's
// processes listed them from the cgroup, then killed each pid; one that
// exited and whose pid was reused outside the container in between was
// killed too. SignalMembers signals only what is still a member.
func TestSignalMembersReusedPid(t *testing.T) {
	member := startSleep(t)
	gone := startSleep(t)
	stale := gone.Process.Pid
	gone.Process.Kill()
	gone.Wait()
	outsider := startAtPid(t, stale)

	listed := []int{member.Process.Pid, stale} // as listed before gone exited
	members := func() ([]int, error) { return []int{member.Process.Pid}, nil }
	if err := SignalMembers(listed, unix.SIGKILL, members); err != nil {
		t.Fatal(err)
	}
	if err := member.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("member: %v, want killed", err)
	}
	time.Sleep(50 * time.Millisecond)
	if !running(outsider.Process.Pid) {
		t.Fatal("the process that reused a member's pid was killed")
	}
}
