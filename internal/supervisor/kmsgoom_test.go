package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestParseOOMRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		want kmsgKill
		ok   bool
	}{
		{"summary", "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/k.slice/berth-a.scope,task_memcg=/k.slice/berth-a.scope,task=stress,pid=4242,uid=0",
			kmsgKill{memcg: "/k.slice/berth-a.scope", pid: 4242}, true},
		{"pod limit: the victim's cgroup counts", "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/k.slice/pod.slice,task_memcg=/k.slice/pod.slice/berth-b.scope,task=sh,pid=7,uid=0",
			kmsgKill{memcg: "/k.slice/pod.slice/berth-b.scope", pid: 7}, true},
		{"memcg kill line", "Memory cgroup out of memory: Killed process 4242 (stress) total-vm:118968kB, anon-rss:20224kB",
			kmsgKill{pid: 4242}, true},
		{"machine-wide kill line", "Out of memory: Killed process 99 (java) total-vm:1kB", kmsgKill{pid: 99}, true},
		{"oom.group banner is not a kill", "Tasks in /k.slice/berth-a.scope are going to be killed due to memory.oom.group set", kmsgKill{}, false},
		{"other lines", "eth0: link up", kmsgKill{}, false},
		{"summary without a cgroup", "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=x,pid=1,uid=0", kmsgKill{pid: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseOOMRecord(tc.msg)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("parseOOMRecord = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseKmsgRecord(t *testing.T) {
	seq, msg, ok := parseKmsgRecord([]byte("6,1234,5678901,-,caller=T1;oom-kill:pid=3\n SUBSYSTEM=x\n"))
	if !ok || seq != 1234 || msg != "oom-kill:pid=3" {
		t.Errorf("got %d %q %v", seq, msg, ok)
	}
	for _, bad := range []string{"no separator", "6;msg", "6,x,1,-;msg"} {
		if _, _, ok := parseKmsgRecord([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// fakeKmsg hands out one record per read, as /dev/kmsg does, EAGAIN at the
// end; an error queued in place of a record is returned once.
type fakeKmsg struct {
	recs []any // string or error
}

func (f *fakeKmsg) Read(p []byte) (int, error) {
	if len(f.recs) == 0 {
		return 0, unix.EAGAIN
	}
	r := f.recs[0]
	f.recs = f.recs[1:]
	if err, ok := r.(error); ok {
		return 0, err
	}
	return copy(p, r.(string)), nil
}

func (f *fakeKmsg) Close() error { return nil }

func (f *fakeKmsg) add(recs ...any) { f.recs = append(f.recs, recs...) }

func TestKernelOOMs(t *testing.T) {
	log := &fakeKmsg{}
	k := &kernelOOMs{openLog: func() (io.ReadCloser, error) { return log, nil }}
	log.add(
		"3,10,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/s/berth-old.scope,task_memcg=/s/berth-old.scope,task=a,pid=500,uid=0\n",
		"3,11,2,-;Memory cgroup out of memory: Killed process 500 (a)\n",
		unix.EPIPE, // records lost: reading goes on
		"6,15,3,-;unrelated\n",
	)
	since := k.mark()
	if since != 15 {
		t.Fatalf("mark = %d, want 15", since)
	}
	log.add(
		"3,16,4,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/s/berth-c.scope,task_memcg=/s/berth-c.scope/sub,task=a,pid=600,uid=0\n",
		"3,17,5,-;Memory cgroup out of memory: Killed process 600 (a)\n",
		// rate limited: no summary, only the kill line, of a recycled pid
		"3,18,6,-;Memory cgroup out of memory: Killed process 500 (b)\n",
	)
	for _, tc := range []struct {
		name  string
		memcg string
		pid   int
		since uint64
		want  uint64
	}{
		{"a kill logged before the supervisor started", "/s/berth-old.scope", 0, since, 1},
		{"a kill in a child cgroup of the scope", "/s/berth-c.scope", 0, since, 1},
		{"the init's kill line, after the mark", "/s/berth-d.scope", 500, since, 1},
		{"the init's kill line, before the mark, is an old pid", "/s/berth-d.scope", 500, 18, 0},
		{"a prefix of another name is not the scope", "/s/berth-c", 0, since, 0},
		{"nothing", "/s/berth-e.scope", 4, since, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := k.killed(tc.memcg, tc.pid, tc.since); got != tc.want {
				t.Errorf("killed = %d, want %d", got, tc.want)
			}
		})
	}

	// Only the newest maxKills are kept.
	for i := range maxKills + 5 {
		log.add(fmt.Sprintf("3,%d,7,-;Memory cgroup out of memory: Killed process %d (x)\n", 100+i, 10000+i))
	}
	k.mark()
	if len(k.kills) != maxKills || k.kills[0].pid != 10005 {
		t.Errorf("kept %d kills, oldest pid %d", len(k.kills), k.kills[0].pid)
	}

	// A log that cannot be opened, or a nil one, knows no kills.
	none := &kernelOOMs{openLog: func() (io.ReadCloser, error) { return nil, errors.New("denied") }}
	var nilLog *kernelOOMs
	if none.mark() != 0 || none.killed("/s/berth-c.scope", 600, 0) != 0 || nilLog.killed("/x", 1, 0) != 0 {
		t.Error("a missing log reported kills")
	}
}

// TestKernelOOMsReal makes a real memory cgroup OOM kill and finds it in
// /dev/kmsg, on whichever hierarchy the machine has (v1 memory controller
// on the CI host, v2 in the test VM).
func TestKernelOOMsReal(t *testing.T) {
	testsupport.Require(t, os.Getuid() == 0, "needs root")
	name := fmt.Sprintf("berth-kmsg-test-%d", os.Getpid())
	dir, limit := filepath.Join("/sys/fs/cgroup", name), "memory.max"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		dir, limit = filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes"
	}
	err := os.Mkdir(dir, 0o755)
	testsupport.Require(t, err == nil, "no memory cgroup to test in: %v", err)
	defer os.Remove(dir)
	err = os.WriteFile(filepath.Join(dir, limit), []byte("33554432"), 0o644)
	testsupport.Require(t, err == nil, "memory limit: %v", err)
	os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)

	k := newKernelOOMs()
	since := k.mark()
	// The hog is this test binary (TestMain's oomHogEnv): it moves itself
	// into the cgroup before allocating.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), oomHogEnv+"="+dir)
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the hog was not killed: %v", err)
	}
	if got := k.killed(relMemcg(dir), cmd.Process.Pid, since); got == 0 {
		t.Errorf("the kernel log has no kill in %s (pid %d)", relMemcg(dir), cmd.Process.Pid)
	}
	if got := k.killed("/"+name+"-other", 0, since); got != 0 {
		t.Errorf("another cgroup has %d kills", got)
	}
}

// oomHogEnv names the cgroup the test binary, run as the hog, joins before
// it allocates until the OOM killer stops it (helpers_test.go's TestMain,
// in the external test package, runs it).
const oomHogEnv = "BERTH_TEST_OOM_HOG"
