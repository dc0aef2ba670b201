package streaming

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	berthexec "github.com/berth-cri/berth/internal/exec"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// testEnv is prepared once by TestMain and read-only afterwards.
var testEnv struct {
	rootfs, supervisor string
}

func TestMain(m *testing.M) {
	if !testsupport.RequireMain(os.Geteuid() == 0, "streaming tests need root") ||
		!testsupport.RequireMain(testsupport.HaveBusybox(), "streaming tests need busybox: apt-get install busybox-static") {
		return
	}
	dir, err := os.MkdirTemp("", "berth-streaming-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		testEnv.rootfs = filepath.Join(dir, "rootfs")
		if err := testsupport.BusyboxRootfs(testEnv.rootfs); err != nil {
			fmt.Println(err)
			return 1
		}
		if testEnv.supervisor, err = testsupport.BuildSupervisor(dir, false); err != nil {
			fmt.Println(err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func testSpec(id, script string) *specs.Spec {
	s := specconv.Example()
	s.Root.Path = testEnv.rootfs
	s.Root.Readonly = true
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", script}
	s.Process.Env = []string{"PATH=/bin"}
	s.Linux.CgroupsPath = "/berth-streaming-test/" + id
	return s
}

// runContainer starts a container running sleep under sup, which also
// runs its execs.
func runContainer(t *testing.T, sup *client.Client, id string) berthexec.Target {
	t.Helper()
	bundle := t.TempDir()
	spec := testSpec(id, "sleep 1000")
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := sup.Create(ctx, id, supv1.CreateRequest{Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return berthexec.Target{ID: id, Kind: supv1.RuntimeLibcontainer, Spec: func() (*specs.Spec, error) { return spec, nil }}
}

// startSupervisor runs a supervisor for attach and exec tests and stops it (and its
// containers) at the end.
func startSupervisor(t *testing.T) *client.Client {
	t.Helper()
	stateDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.EnsureRunning(ctx, testEnv.supervisor, stateDir, client.WithCgroup(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, _ := c.List(ctx)
		for _, st := range list {
			c.Kill(ctx, st.ID, syscall.SIGKILL, true)
			c.Wait(ctx, st.ID)
			c.Delete(ctx, st.ID)
		}
		if v, err := c.Version(ctx); err == nil {
			testsupport.StopSupervisor(v.Pid, v.KeeperPid)
		}
	})
	return c
}

// fakeLookup resolves ids from maps filled by the test.
type fakeLookup struct {
	mu      sync.Mutex
	execs   map[string]berthexec.Target
	attachs map[string]AttachTarget
	netns   map[string]string
}

func newLookup() *fakeLookup {
	return &fakeLookup{execs: map[string]berthexec.Target{}, attachs: map[string]AttachTarget{}, netns: map[string]string{}}
}

func (l *fakeLookup) ExecTarget(_ context.Context, id string) (berthexec.Target, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.execs[id]
	if !ok {
		return t, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (l *fakeLookup) AttachTarget(_ context.Context, id string) (AttachTarget, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.attachs[id]
	if !ok {
		return t, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (l *fakeLookup) SandboxNetNS(_ context.Context, id string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.netns[id]
	if !ok {
		return "", fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return p, nil
}

// newService starts a streaming service on loopback.
func newService(t *testing.T, l Lookup, sup *client.Client) *Service {
	t.Helper()
	log := logrus.New()
	s, err := New(Config{}, l, berthexec.New(log, sup), sup, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// spdyDial opens an SPDY session on url for protocol, as client-go's
// executors do (k8s.io/streaming is the same code kubectl links).
func spdyDial(t *testing.T, url, protocol string) httpstream.Connection {
	t.Helper()
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatalf("upgrade %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// session is the client side of a remotecommand v4 session.
type session struct {
	stdout, stderr strings.Builder
	status         string // the error stream's JSON status
}

// runSession drives a remotecommand session the way client-go's v4
// executor does: an error stream, then stdin/stdout/stderr/resize streams.
func runSession(t *testing.T, url string, stdin io.Reader, stderr, tty bool, sizes []remotecommand.TerminalSize, stdout io.Writer) *session {
	t.Helper()
	conn := spdyDial(t, url, remotecommand.StreamProtocolV4Name)
	create := func(typ string) httpstream.Stream {
		h := http.Header{}
		h.Set(remotecommand.StreamType, typ)
		s, err := conn.CreateStream(h)
		if err != nil {
			t.Fatalf("create %s stream: %v", typ, err)
		}
		return s
	}
	var sess session
	errStream := create(remotecommand.StreamTypeError)
	errStream.Close() // nothing to send on it
	if stdin != nil {
		in := create(remotecommand.StreamTypeStdin)
		go func() {
			io.Copy(in, stdin)
			in.Close()
		}()
	}
	var wg sync.WaitGroup
	outW := io.Writer(&sess.stdout)
	if stdout != nil {
		outW = io.MultiWriter(&sess.stdout, stdout)
	}
	out := create(remotecommand.StreamTypeStdout)
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(outW, out)
	}()
	if stderr {
		errOut := create(remotecommand.StreamTypeStderr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(&sess.stderr, errOut)
		}()
	}
	if tty {
		resize := create(remotecommand.StreamTypeResize)
		enc := json.NewEncoder(resize)
		for _, sz := range sizes {
			enc.Encode(sz)
		}
	}
	status, _ := io.ReadAll(errStream)
	wg.Wait()
	sess.status = string(status)
	return &sess
}
