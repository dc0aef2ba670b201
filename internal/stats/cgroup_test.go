package stats

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// allocHelperEnv makes the test binary a helper process that allocates
// allocMiB once told to (a line on stdin), says "ok", and holds the memory
// until stdin closes.
const (
	allocHelperEnv = "BERTH_STATS_TEST_ALLOC"
	allocMiB       = 64
)

func TestMain(m *testing.M) {
	if os.Getenv(allocHelperEnv) != "" {
		allocHelper()
		return
	}
	os.Exit(m.Run())
}

func allocHelper() {
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(1)
	}
	mem := make([]byte, allocMiB<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1 // touch every page: untouched pages are not charged
	}
	fmt.Println("ok")
	_, _ = io.Copy(io.Discard, in)
	mem[0]++ // keep mem alive until here
}

// v1Controllers are the controllers the tests put their processes in.
var v1Controllers = []string{"cpu", "cpuacct", "memory", "pids"}

// needV1 skips unless the test can create v1 cgroups.
func needV1(t testing.TB) {
	t.Helper()
	testsupport.Require(t, os.Geteuid() == 0, "needs root")
	if m := cgroups.Mode(); m != cgroups.Legacy && m != cgroups.Hybrid {
		// skip: platform
		t.Skip("needs cgroup v1 controllers")
	}
}

// testCgroup creates the cgroup berth-stats-test/<name> in every v1
// controller and removes it (and the parent, when empty) at cleanup,
// after the processes in it have been reaped (cleanups run last-in
// first-out, so a process started after this call is killed first).
func testCgroup(t testing.TB, name string) string {
	t.Helper()
	rel := filepath.Join("/berth-stats-test", name)
	for _, c := range v1Controllers {
		if err := os.MkdirAll(filepath.Join(defaultV1Root, c, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range v1Controllers {
			dir := filepath.Join(defaultV1Root, c, rel)
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove cgroup: %v", err)
			}
			_ = os.Remove(filepath.Dir(dir)) // fails while another test uses it
		}
	})
	return rel
}

// joinCgroup moves pid into the cgroup at dir under each root.
func joinCgroup(t testing.TB, pid int, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatalf("join %s: %v", d, err)
		}
	}
}

func v1Dirs(rel string) []string {
	var dirs []string
	for _, c := range v1Controllers {
		dirs = append(dirs, filepath.Join(defaultV1Root, c, rel))
	}
	return dirs
}

// startBurner starts a shell spinning on one CPU and kills it at cleanup.
func startBurner(t testing.TB) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// poll calls f until it returns nil or the deadline passes.
func poll(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	var err error
	if !testsupport.Poll(timeout, 20*time.Millisecond, func() bool { err = f(); return err == nil }) {
		t.Fatal(err)
	}
}

func TestV1ReaderMovingNumbers(t *testing.T) {
	needV1(t)
	name := fmt.Sprintf("moving-%d", os.Getpid())
	rel := testCgroup(t, name)
	// A memory limit, to see available_bytes.
	const limit = 512 << 20
	if err := os.WriteFile(filepath.Join(defaultV1Root, "memory", rel, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatal(err)
	}

	r := NewV1Reader(defaultV1Root)
	idle, err := r.Read(rel)
	if err != nil {
		t.Fatal(err)
	}
	if idle.Memory == nil || idle.Pids == nil || *idle.Pids != 0 || idle.PSI != nil {
		t.Fatalf("idle cgroup: %+v", idle)
	}

	burner := startBurner(t)
	joinCgroup(t, burner.Process.Pid, v1Dirs(rel)...)

	alloc := exec.Command(os.Args[0], "-test.run=^$")
	alloc.Env = append(os.Environ(), allocHelperEnv+"=1")
	stdin, err := alloc.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := alloc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := alloc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = alloc.Process.Kill(); _ = alloc.Wait() })
	joinCgroup(t, alloc.Process.Pid, v1Dirs(rel)...)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("alloc helper: %q, %v", line, err)
	}

	s := NewSampler()
	first, err := r.Read(rel)
	if err != nil {
		t.Fatal(err)
	}
	if nc := s.NanoCores(name, first.Time, first.CPUUsageNanos); nc != 0 {
		t.Errorf("first sample: %d nano cores, want 0", nc)
	}
	// The burner spins one core: the second sample must see CPU time pass.
	var second Cgroup
	poll(t, 5*time.Second, func() error {
		second, err = r.Read(rel)
		if err != nil {
			return err
		}
		if second.Time.Sub(first.Time) < 100*time.Millisecond {
			return errors.New("window too short yet")
		}
		return nil
	})
	nc := s.NanoCores(name, second.Time, second.CPUUsageNanos)
	if nc < 1e8 || nc > 2.5e9 {
		t.Errorf("burner: %d nano cores, want about one core (1e9)", nc)
	}
	if second.CPUUsageNanos <= first.CPUUsageNanos {
		t.Errorf("cpu usage did not grow: %d then %d", first.CPUUsageNanos, second.CPUUsageNanos)
	}
	m := second.Memory
	if m.WorkingSet < allocMiB<<20 || m.Usage < m.WorkingSet || m.RSS < allocMiB<<20 {
		t.Errorf("memory after allocating %d MiB: %+v", allocMiB, m)
	}
	if m.Limit != limit || m.Available() != limit-m.WorkingSet {
		t.Errorf("limit %d available %d, want %d and %d", m.Limit, m.Available(), limit, limit-m.WorkingSet)
	}
	if m.PageFaults < (allocMiB<<20)/4096 {
		t.Errorf("page faults %d, want at least one per page touched", m.PageFaults)
	}
	if second.Pids == nil || *second.Pids < 2 {
		t.Errorf("pids = %v, want the burner and the helper", second.Pids)
	}

	// The parent (a pod cgroup) counts its children.
	parent, err := r.Read("/berth-stats-test")
	if err != nil {
		t.Fatal(err)
	}
	if parent.CPUUsageNanos < second.CPUUsageNanos || parent.Memory.WorkingSet < allocMiB<<20 {
		t.Errorf("parent does not include child: %+v %+v", parent, parent.Memory)
	}
}

func TestV1ReaderMissingCgroup(t *testing.T) {
	needV1(t)
	_, err := NewV1Reader(defaultV1Root).Read("/berth-stats-test/does-not-exist")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// TestV2Reader uses the (controller-less) cgroup2 hierarchy a hybrid host
// mounts at /sys/fs/cgroup/unified: CPU usage and PSI are core files there,
// memory and pids are absent, which the reader must report as absent.
func TestV2Reader(t *testing.T) {
	testsupport.Require(t, os.Geteuid() == 0, "needs root")
	mnt := "/sys/fs/cgroup/unified"
	if cgroups.Mode() == cgroups.Unified {
		mnt = defaultV2Mountpoint
	} else if cgroups.Mode() != cgroups.Hybrid {
		// skip: platform
		t.Skip("no cgroup2 hierarchy")
	}
	rel := fmt.Sprintf("/berth-stats-test-v2-%d", os.Getpid())
	dir := filepath.Join(mnt, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	burner := startBurner(t)
	joinCgroup(t, burner.Process.Pid, dir)

	r := NewV2Reader(mnt)
	poll(t, 5*time.Second, func() error {
		c, err := r.Read(rel)
		if err != nil {
			return err
		}
		if c.CPUUsageNanos < 10e6 {
			return fmt.Errorf("cpu usage %d ns, want it to grow", c.CPUUsageNanos)
		}
		if _, err := os.Stat(filepath.Join(dir, "cpu.pressure")); err == nil {
			if c.PSI == nil || c.PSI.CPU == nil || c.PSI.CPU.Some == nil {
				return fmt.Errorf("cpu.pressure exists but PSI = %+v", c.PSI)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.max")); err != nil && c.Memory != nil {
			return fmt.Errorf("no memory controller but memory = %+v", c.Memory)
		}
		return nil
	})

	if _, err := r.Read(rel + "-gone"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing cgroup: %v, want ErrNotFound", err)
	}
}

func TestCgroupPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/berth/abc", "/berth/abc"},
		{"/kubepods/burstable/pod1/abc", "/kubepods/burstable/pod1/abc"},
		{"kubepods-burstable-pod1_2.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice"},
		{"kubepods.slice", "/kubepods.slice"},
	} {
		if got := cgroupPath(tc.in); got != tc.want {
			t.Errorf("cgroupPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
