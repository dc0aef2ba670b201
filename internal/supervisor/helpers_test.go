package supervisor_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// env is what TestMain prepares once: the supervisor binary and a busybox
// rootfs shared read-only by every test container.
type env struct {
	bin    string
	rootfs string
}

var testEnv env // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	if dir := os.Getenv("BERTH_TEST_OOM_HOG"); dir != "" {
		oomHog(dir) // TestKernelOOMsReal's child: never returns
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if !testsupport.RequireMain(os.Geteuid() == 0, "supervisor integration tests need root") ||
		!testsupport.RequireMain(testsupport.HaveBusybox(), "supervisor integration tests need busybox: apt-get install busybox-static") {
		return 0
	}
	dir, err := os.MkdirTemp("", "berth-supervisor-test-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	// BERTH_SUPERVISOR_RACE: race-check the supervisor itself.
	if testEnv.bin, err = testsupport.BuildSupervisor(dir, os.Getenv("BERTH_SUPERVISOR_RACE") != ""); err != nil {
		fmt.Println(err)
		return 1
	}
	testEnv.rootfs = filepath.Join(dir, "rootfs")
	if err := testsupport.BusyboxRootfs(testEnv.rootfs); err != nil {
		fmt.Println(err)
		return 1
	}
	return m.Run()
}

// startSupervisor starts a supervisor with its own state dir and stops it
// (and every container it still has) when the test ends.
func startSupervisor(t *testing.T) (*client.Client, string) {
	t.Helper()
	stateDir := t.TempDir()
	c := ensure(t, stateDir)
	t.Cleanup(func() {
		stopAll(t, c)
		log, _ := os.ReadFile(filepath.Join(stateDir, "supervisor", "supervisor.log"))
		if strings.Contains(string(log), "DATA RACE") || strings.Contains(string(log), "panic") {
			t.Errorf("supervisor log:\n%s", log)
		}
	})
	return c, stateDir
}

func ensure(t *testing.T, stateDir string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(10*time.Second))
	defer cancel()
	c, err := client.EnsureRunning(ctx, testEnv.bin, stateDir, client.WithCgroup(""))
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(stateDir, "supervisor", "supervisor.log"))
		t.Fatalf("EnsureRunning: %v\n%s", err, log)
	}
	return c
}

func stopAll(t *testing.T, c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(10*time.Second))
	defer cancel()
	list, _ := c.List(ctx)
	for _, st := range list {
		c.Kill(ctx, st.ID, syscall.SIGKILL, true)
		c.Wait(ctx, st.ID)
		if err := c.Delete(ctx, st.ID); err != nil {
			t.Errorf("cleanup delete %s: %v", st.ID, err)
		}
	}
	v, err := c.Version(ctx)
	if err != nil {
		return
	}
	// The keeper passes SIGTERM on and ends with its supervisor; a
	// supervisor signalled alone would be started again.
	testsupport.StopSupervisor(v.Pid, v.KeeperPid)
	if v.KeeperPid != 0 {
		waitGone(t, v.KeeperPid)
	}
	waitGone(t, v.Pid)
}

// waitGone polls until pid no longer runs (or is a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	if !testsupport.Poll(testsupport.Slow(5*time.Second), 5*time.Millisecond, func() bool { return !pidAlive(pid) }) {
		t.Fatalf("process %d still running", pid)
	}
}

type bundleOpt func(*specs.Spec)

func hostPID(s *specs.Spec) {
	var ns []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
}

// bundle writes a bundle running sh -c script in the busybox rootfs.
func bundle(t *testing.T, id, script string, opts ...bundleOpt) string {
	t.Helper()
	s := specconv.Example()
	s.Root.Path = testEnv.rootfs
	s.Root.Readonly = true
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", script}
	s.Linux.CgroupsPath = "/berth-test/" + id
	for _, o := range opts {
		o(s)
	}
	dir := t.TempDir()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(20*time.Second))
	t.Cleanup(cancel)
	return ctx
}

// run creates and starts a container.
func run(t *testing.T, c *client.Client, id string, req v1.CreateRequest) *v1.State {
	t.Helper()
	ctx := testCtx(t)
	if _, err := c.Create(ctx, id, req); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	st, err := c.Start(ctx, id)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return st
}

func wait(t *testing.T, c *client.Client, id string) *v1.ExitStatus {
	t.Helper()
	st, err := c.Wait(testCtx(t), id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	if st.Status != v1.StatusStopped || st.Exit == nil {
		t.Fatalf("wait %s returned %+v", id, st)
	}
	if st.Exit.FinishedAt == 0 {
		t.Fatalf("exit of %s without finished_at", id)
	}
	return st.Exit
}

// logRecord is one parsed CRI log line.
type logRecord struct {
	stream, tag, msg string
}

// readLog parses a CRI log file strictly: every record, the last included,
// is whole. Use it once the writer is done with the file.
func readLog(t *testing.T, path string) []logRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLog(t, data)
}

// readLiveLog parses a log the supervisor may be writing: it leaves out an
// unterminated last record. Each record is one write(2), but the kernel
// copies a write into the page cache a page at a time and grows the file
// after each page, so a reader can see the first part of a record that
// crosses a page boundary (as kubelet's log reader can; it waits for the
// newline too).
func readLiveLog(t *testing.T, path string) []logRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLog(t, data[:bytes.LastIndexByte(data, '\n')+1])
}

func parseLog(t *testing.T, data []byte) []logRecord {
	t.Helper()
	var out []logRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed log line %q", sc.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Fatalf("bad timestamp in %q: %v", sc.Text(), err)
		}
		if parts[1] != "stdout" && parts[1] != "stderr" || parts[2] != "P" && parts[2] != "F" {
			t.Fatalf("bad stream or tag in %q", sc.Text())
		}
		out = append(out, logRecord{parts[1], parts[2], parts[3]})
	}
	return out
}

// messages joins partial records into the lines a reader of the log sees.
func messages(recs []logRecord, stream string) []string {
	var out []string
	var cur strings.Builder
	pending := false
	for _, r := range recs {
		if r.stream != stream {
			continue
		}
		cur.WriteString(r.msg)
		pending = true
		if r.tag == "F" {
			out = append(out, cur.String())
			cur.Reset()
			pending = false
		}
	}
	if pending {
		out = append(out, cur.String())
	}
	return out
}

// counterScript prints "line<N>" every 10 ms, N from 0.
const counterScript = `i=0; while true; do echo line$i; i=$((i+1)); sleep 0.01; done`

// checkSequence asserts lines are exactly line0..lineN-1, each once.
func checkSequence(t *testing.T, lines []string) {
	t.Helper()
	for i, l := range lines {
		if want := fmt.Sprintf("line%d", i); l != want {
			t.Fatalf("log line %d is %q, want %q (lines around: %q)", i, l, want, lines[max(0, i-3):min(len(lines), i+3)])
		}
	}
}

// waitLines polls until the log holds at least n complete stdout lines.
func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	if !testsupport.Poll(testsupport.Slow(10*time.Second), 10*time.Millisecond, func() bool {
		_, err := os.Stat(path)
		return err == nil && len(messages(readLiveLog(t, path), "stdout")) >= n
	}) {
		t.Fatalf("log %s never reached %d lines", path, n)
	}
}

func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(data), ") Z ")
}

// oomHog joins the memory cgroup dir and allocates until the OOM killer
// stops it (kmsgoom_test.go).
func oomHog(dir string) {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "joining the cgroup:", err)
		os.Exit(3)
	}
	var keep [][]byte
	for range 1024 {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	fmt.Fprintln(os.Stderr, "allocated", len(keep), "MiB without an OOM kill")
	os.Exit(4)
}
