package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// Issue 9, hostile input through the CRI: each bad request gets a clear
// error, berthd keeps serving, and nothing is written outside its
// directories and the pod's log directory.

// rawClient is a plain gRPC client of d: unlike kubelet's, it sends any
// request as is (empty ids, unknown enums) and up to 64 MiB.
func rawClient(t *testing.T, d *harness.Daemon) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// healthy fails the test unless berthd is still running and answering.
func healthy(t *testing.T, d *harness.Daemon) {
	t.Helper()
	select {
	case <-d.Exited:
		t.Fatalf("berthd died: %v\n%s", d.Cmd.ProcessState, d.Logs)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.RuntimeClient().Version(ctx, "v1"); err != nil {
		t.Fatalf("berthd stopped answering: %v\n%s", err, d.Logs)
	}
	if strings.Contains(d.Logs.String(), "panic") {
		t.Fatalf("berthd logged a panic:\n%s", d.Logs)
	}
}

func wantCode(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	if !slices.Contains(want, status.Code(err)) {
		t.Errorf("%s: %v, want one of %v", what, err, want)
	}
}

func TestHostileLogPaths(t *testing.T) {
	e := newPodEnv(t, "hostile-logs")
	ctx := context.Background()
	outside := t.TempDir()
	logDir := e.podCfg.LogDirectory
	os.Symlink(outside, filepath.Join(logDir, "evil"))
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(logDir, "victim.log"))
	for _, tc := range []struct{ name, logPath string }{
		{"dotdot", "../../" + filepath.Base(outside) + "/x.log"},
		{"absolute", filepath.Join(outside, "abs.log")},
		{"symlinked subdirectory", "evil/0.log"},
		{"symlinked file", "victim.log"},
		{"NUL", "a\x00.log"},
	} {
		cfg := e.containerConfig("logs-"+strings.ReplaceAll(tc.name, " ", "-"), "echo", "leak")
		cfg.LogPath = tc.logPath
		st := e.createErr(t, cfg)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "log") {
			t.Errorf("%s: %v, want InvalidArgument about the log path", tc.name, st.Err())
		}
	}

	// A pod whose log directory itself is a symlink pointing outside.
	link := filepath.Join(t.TempDir(), "pod-logs")
	os.Symlink(outside, link)
	podCfg := podConfig("hostile-logs-link", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = link })
	pod, err := e.rt.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.rt.StopPodSandbox(ctx, pod); e.rt.RemovePodSandbox(ctx, pod) }()
	_, err = e.rt.CreateContainer(ctx, pod, e.containerConfig("via-link", "echo", "leak"), podCfg)
	wantCode(t, "log directory is a symlink", err, codes.InvalidArgument)

	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside the log directory: %v", ents)
	}
	if list, _ := e.rt.ListContainers(ctx, nil); len(list) != 0 {
		t.Errorf("refused creates left containers: %v", list)
	}
	// The pod still works.
	if st := e.waitExit(t, e.run(t, e.containerConfig("fine", "echo", "ok"))); st.ExitCode != 0 {
		t.Errorf("a good container after the refusals: exit %d", st.ExitCode)
	}
	healthy(t, e.d)
}

func TestHostileHostPaths(t *testing.T) {
	e := newPodEnv(t, "hostile-mounts")
	root, run := filepath.Join(e.d.Dir, "root"), filepath.Join(e.d.Dir, "run")
	link := filepath.Join(t.TempDir(), "innocent")
	os.Symlink(filepath.Join(root, "containers"), link)
	for _, host := range []string{root, run, filepath.Join(run, "supervisor"), filepath.Join(root, "snapshots"), link} {
		cfg := e.containerConfig("mount", "true")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/steal", HostPath: host}}
		st := e.createErr(t, cfg)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), host) {
			t.Errorf("host_path %s: %v, want InvalidArgument naming it", host, st.Err())
		}
	}
	// "/" (privileged debug pods mount it) and the CRI socket (node agents
	// mount it) stay allowed.
	cfg := e.containerConfig("allowed", "sh", "-c", "test -d /host/etc && test -S /cri.sock")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/host", HostPath: "/", Readonly: true},
		{ContainerPath: "/cri.sock", HostPath: e.d.Socket},
	}
	if st := e.waitExit(t, e.run(t, cfg)); st.ExitCode != 0 {
		t.Errorf("mounting / and the CRI socket: exit %d, %s", st.ExitCode, logLines(t, st.LogPath))
	}
	healthy(t, e.d)
}

// TestHostileSizes: absurdly large but well-formed requests within the
// 16 MiB message limit either work or are refused with InvalidArgument;
// berthd stays healthy and its records stay readable (a restart loads
// them).
func TestHostileSizes(t *testing.T) {
	e := newPodEnv(t, "hostile-sizes")
	ctx := context.Background()
	manyEnv := make([]*runtimeapi.KeyValue, 100_000)
	for i := range manyEnv {
		manyEnv[i] = &runtimeapi.KeyValue{Key: fmt.Sprintf("K%d", i), Value: []byte("v")}
	}
	many := func(prefix string, n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("%s%d", prefix, i)] = "v"
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.ContainerConfig)
		runs   bool // else refused with InvalidArgument
	}{
		{"100k env entries", func(c *runtimeapi.ContainerConfig) { c.Envs = manyEnv }, true},
		// Beyond execve's limits: they started, then exited 255 with
		// "argument list too long" in the log, at every restart.
		{"1 MiB env value", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "BIG", Value: []byte(strings.Repeat("x", 1<<20))}}
		}, false},
		{"5 MiB command line", func(c *runtimeapi.ContainerConfig) { c.Args = []string{strings.Repeat("y", 5<<20)} }, false},
		{"7 MiB command line in 100 KiB args", func(c *runtimeapi.ContainerConfig) {
			for range 70 {
				c.Args = append(c.Args, strings.Repeat("y", 100<<10))
			}
		}, false},
		{"10k labels and annotations", func(c *runtimeapi.ContainerConfig) {
			c.Labels, c.Annotations = many("label", 10_000), many("annotation", 10_000)
		}, true},
		{"2k env entries", func(c *runtimeapi.ContainerConfig) { c.Envs = manyEnv[:2000] }, true},
	} {
		cfg := e.containerConfig("size-"+strings.ReplaceAll(tc.name, " ", "-"), "true")
		tc.mutate(cfg)
		id, err := e.rt.CreateContainer(ctx, e.pod, cfg, e.podCfg)
		if !tc.runs {
			wantCode(t, tc.name, err, codes.InvalidArgument)
			if err == nil {
				e.rt.RemoveContainer(ctx, id)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err := e.rt.StartContainer(ctx, id); err != nil {
			t.Errorf("%s: start: %v", tc.name, err)
			continue
		}
		if st := e.waitExit(t, id); st.ExitCode != 0 {
			t.Errorf("%s: exit %d", tc.name, st.ExitCode)
		}
	}
	// A 200 KiB pod annotation and 10k pod labels (a 1 MiB one is past
	// the API server's limit: TestMetadataSizeLimits).
	big := podConfig("hostile-big-pod", func(c *runtimeapi.PodSandboxConfig) {
		c.Annotations["big"] = strings.Repeat("z", 200<<10)
		c.Labels = many("l", 10_000)
	})
	pod, err := e.rt.RunPodSandbox(ctx, big, "")
	if err != nil {
		t.Fatalf("big pod: %v", err)
	}
	healthy(t, e.d)
	// The records (labels, annotations, env) load again after a restart.
	e.d.Stop()
	e.d.Start()
	e.d.WaitReady()
	e.rt = e.d.RuntimeClient()
	list, err := e.rt.ListContainers(ctx, nil)
	if err != nil || len(list) != 3 {
		t.Fatalf("containers after restart: %d, %v\n%s", len(list), err, e.d.Logs)
	}
	if st, err := e.rt.PodSandboxStatus(ctx, pod, false); err != nil || len(st.Status.Labels) != 10_000 {
		t.Errorf("big pod after restart: %v", err)
	}
	e.rt.StopPodSandbox(ctx, pod)
	e.rt.RemovePodSandbox(ctx, pod)
	healthy(t, e.d)
}

// TestHostileIDs sends malformed ids to every RPC that takes one: a clear
// NotFound or InvalidArgument (OK for Stop and Remove, which are
// idempotent), never a crash, and nothing created outside berthd's dirs.
func TestHostileIDs(t *testing.T) {
	e := newPodEnv(t, "hostile-ids")
	rt, _ := rawClient(t, e.d)
	ctx := context.Background()
	parent := filepath.Dir(e.d.Dir)
	before, _ := os.ReadDir(parent)
	ids := []string{"", "../x", "../../../../../../tmp/berth-hostile-id", strings.Repeat("a", 300) + "z", "nul\x00byte", "ünïcødé-☃", "/", "."}
	notFound := []codes.Code{codes.NotFound, codes.InvalidArgument}
	idempotent := []codes.Code{codes.OK, codes.InvalidArgument}
	for _, id := range ids {
		for _, call := range []struct {
			rpc  string
			want []codes.Code
			do   func() error
		}{
			{"PodSandboxStatus", notFound, func() error {
				_, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
				return err
			}},
			{"StopPodSandbox", idempotent, func() error {
				_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
				return err
			}},
			{"RemovePodSandbox", idempotent, func() error {
				_, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
				return err
			}},
			{"PodSandboxStats", notFound, func() error {
				_, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
				return err
			}},
			{"CreateContainer", notFound, func() error {
				_, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: e.containerConfig("c", "true"), SandboxConfig: e.podCfg})
				return err
			}},
			{"ContainerStatus", notFound, func() error {
				_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
				return err
			}},
			{"StartContainer", notFound, func() error {
				_, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
				return err
			}},
			{"StopContainer", idempotent, func() error {
				_, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
				return err
			}},
			{"RemoveContainer", idempotent, func() error {
				_, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
				return err
			}},
			{"ExecSync", notFound, func() error {
				_, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 2})
				return err
			}},
			{"Exec", notFound, func() error {
				_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
				return err
			}},
			{"Attach", notFound, func() error {
				_, err := rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true})
				return err
			}},
			{"PortForward", notFound, func() error {
				_, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{80}})
				return err
			}},
			{"ContainerStats", notFound, func() error {
				_, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
				return err
			}},
			{"UpdateContainerResources", notFound, func() error {
				_, err := rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 2}})
				return err
			}},
			{"ReopenContainerLog", notFound, func() error {
				_, err := rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
				return err
			}},
		} {
			wantCode(t, fmt.Sprintf("%s(%q)", call.rpc, id), call.do(), call.want...)
		}
	}
	if _, err := os.Stat("/tmp/berth-hostile-id"); err == nil {
		t.Error("an id became a path: /tmp/berth-hostile-id exists")
	}
	if after, _ := os.ReadDir(parent); len(after) != len(before) {
		t.Errorf("entries appeared beside berthd's directory: %v -> %v", before, after)
	}

	// Duplicate names: the second create of the same name is refused.
	id := e.run(t, e.containerConfig("twin", "sleep", "100"))
	_, err := e.rt.CreateContainer(ctx, e.pod, e.containerConfig("twin", "true"), e.podCfg)
	wantCode(t, "duplicate container name", err, codes.AlreadyExists)
	_, err = e.rt.RunPodSandbox(ctx, e.podCfg, "")
	wantCode(t, "duplicate pod name", err, codes.AlreadyExists)
	if st, err := e.rt.ContainerStatus(ctx, id, false); err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("the first twin after the duplicate: %v %v", st, err)
	}
	healthy(t, e.d)
}

// TestHostileEnums: enum values the CRI does not define are refused, not
// read as a default that isolates less.
func TestHostileEnums(t *testing.T) {
	e := newPodEnv(t, "hostile-enums")
	rt, _ := rawClient(t, e.d)
	ctx := context.Background()
	const bad = 99
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.PodSandboxConfig)
	}{
		{"network NamespaceMode", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: bad}}
		}},
		{"ipc NamespaceMode", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: bad}}
		}},
		{"Protocol", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{Protocol: bad, ContainerPort: 80}}
		}},
		{"SupplementalGroupsPolicy", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SupplementalGroupsPolicy: bad}
		}},
		{"seccomp ProfileType", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: bad}}
		}},
	} {
		cfg := podConfig("enum-" + strings.ReplaceAll(tc.name, " ", "-"))
		tc.mutate(cfg)
		_, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "pod "+tc.name+" 99", err, codes.InvalidArgument)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.ContainerConfig)
	}{
		{"pid NamespaceMode", func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.NamespaceOptions.Pid = bad }},
		{"SupplementalGroupsPolicy", func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.SupplementalGroupsPolicy = bad }},
		{"Signal", func(c *runtimeapi.ContainerConfig) { c.StopSignal = bad }},
		{"seccomp ProfileType", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: bad}
		}},
		{"apparmor ProfileType", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: bad}
		}},
		{"MountPropagation", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/tmp", Propagation: bad}}
		}},
	} {
		cfg := e.containerConfig("enum-"+strings.ReplaceAll(tc.name, " ", "-"), "true")
		tc.mutate(cfg)
		_, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: e.pod, Config: cfg, SandboxConfig: e.podCfg})
		wantCode(t, "container "+tc.name+" 99", err, codes.InvalidArgument)
	}
	if pods, _ := e.rt.ListPodSandbox(ctx, nil); len(pods) != 1 {
		t.Errorf("refused pods left behind: %v", pods)
	}
	if list, _ := e.rt.ListContainers(ctx, nil); len(list) != 0 {
		t.Errorf("refused containers left behind: %v", list)
	}
	healthy(t, e.d)
}

// TestHostileOversizedRequest: a message above the 16 MiB receive limit is
// refused by gRPC itself, and berthd keeps serving.
func TestHostileOversizedRequest(t *testing.T) {
	d, _, _ := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt, img := rawClient(t, d)
	ctx := context.Background()
	cfg := podConfig("oversized", func(c *runtimeapi.PodSandboxConfig) { c.Annotations["big"] = strings.Repeat("o", 17<<20) })
	_, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	wantCode(t, "17 MiB RunPodSandbox", err, codes.ResourceExhausted)
	_, err = img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: strings.Repeat("i", 20<<20)}})
	wantCode(t, "20 MiB PullImage", err, codes.ResourceExhausted)
	if pods, err := d.RuntimeClient().ListPodSandbox(ctx, nil); err != nil || len(pods) != 0 {
		t.Errorf("after the oversized requests: %v %v", pods, err)
	}
	healthy(t, d)
}

// TestHostileCredentials pulls with credentials a registry rejects (one
// that echoes the Authorization header back, as some do) and looks for
// each secret in berthd's trace-level log, the error and verbose Status:
// absent everywhere.
func TestHostileCredentials(t *testing.T) {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:the-right-one")) {
			w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
			w.WriteHeader(http.StatusUnauthorized)
			user, pass, _ := r.BasicAuth()
			fmt.Fprintf(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials %s %s:%s"}]}`, r.Header.Get("Authorization"), user, pass)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	d := harness.New(t, "")
	b, _ := os.ReadFile(d.Config)
	os.WriteFile(d.Config, []byte(strings.Replace(string(b), `log_level = "debug"`, `log_level = "trace"`, 1)), 0o644)
	d.Start()
	d.WaitReady()
	_, img := rawClient(t, d)
	rt := d.RuntimeClient()
	ctx := context.Background()
	secrets := []string{"pw-Zq8-distinctive", "auth-pw-Kx3-distinctive", "idtoken-Vb7-distinctive", "regtoken-Np2-distinctive"}
	basic := func(user, pw string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)) }
	secrets = append(secrets, basic("alice", secrets[0]), basic("bob", secrets[1]))
	var errs []string
	for _, auth := range []*runtimeapi.AuthConfig{
		{Username: "alice", Password: secrets[0], ServerAddress: host},
		{Auth: basic("bob", secrets[1])},
		{IdentityToken: secrets[2]},
		{RegistryToken: secrets[3]},
	} {
		_, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: host + "/private/app:1"}, Auth: auth})
		if err == nil {
			t.Fatal("a pull with rejected credentials succeeded")
		}
		errs = append(errs, err.Error())
	}
	st, err := rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	verbose := fmt.Sprint(st.Info)
	logs := d.Logs.String()
	if !strings.Contains(logs, "PullImage") || !strings.Contains(logs, `"request"`) && !strings.Contains(logs, "request=") {
		t.Fatalf("trace logging of requests is off; the grep proves nothing:\n%s", logs)
	}
	for _, s := range secrets {
		for where, text := range map[string]string{"log": logs, "errors": strings.Join(errs, "\n"), "verbose status": verbose} {
			if strings.Contains(text, s) {
				t.Errorf("secret %q appears in berthd's %s", s, where)
			}
		}
	}
	t.Logf("pull errors: %q", errs)
	healthy(t, d)
}
