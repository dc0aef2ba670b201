package integration

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/test/internal/harness"
)

func TestVersionAndStatus(t *testing.T) {
	d := harness.New(t, "")
	d.Start()
	rt := d.RuntimeClient()
	ctx := context.Background()

	v, err := rt.Version(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "0.1.0" || v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Errorf("version %+v", v)
	}

	harness.WaitFor(t, "RuntimeReady", 10*time.Second, func() bool {
		st, err := rt.Status(ctx, false)
		return err == nil && condition(st.Status, runtimeapi.RuntimeReady).Status
	})
	st, err := rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	// No CNI config in the private conf dir: the network is not ready, and says why.
	netCond := condition(st.Status, runtimeapi.NetworkReady)
	if netCond.Status || netCond.Reason == "" || netCond.Message == "" {
		t.Errorf("NetworkReady %+v, want false with a reason and message", netCond)
	}
	names := []string{}
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != ",runc" {
		t.Errorf("runtime handlers %q, want the default \"\" and runc", names)
	}
	if f := st.GetFeatures(); !f.GetSupplementalGroupsPolicy() || !f.GetMountOptions() || f.GetUserNamespacesHostNetwork() {
		t.Errorf("features %+v", f)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatalf("verbose info[config] is not JSON: %v", err)
	}
	if cfg["state_dir"] != filepath.Join(d.Dir, "run") {
		t.Errorf("verbose config state_dir %v", cfg["state_dir"])
	}

	rc, err := rt.RuntimeConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The default, auto: systemd where systemd is init on pure cgroup v2.
	want := runtimeapi.CgroupDriver_CGROUPFS
	if h := cgroupdriver.Probe(); h.SystemdPID1 && h.CgroupV2 {
		want = runtimeapi.CgroupDriver_SYSTEMD
	}
	if got := rc.GetLinux().GetCgroupDriver(); got != want {
		t.Errorf("cgroup driver %v, want %v", got, want)
	}
}

func TestNetworkReadyFollowsConfDir(t *testing.T) {
	d := harness.New(t, "")
	d.Start()
	rt := d.RuntimeClient()
	ctx := context.Background()
	netReady := func() bool {
		st, err := rt.Status(ctx, false)
		return err == nil && condition(st.Status, runtimeapi.NetworkReady).Status
	}
	confDir := filepath.Join(d.Dir, "net.d")
	os.MkdirAll(confDir, 0o755)
	conf := `{"cniVersion":"1.0.0","name":"itest","plugins":[{"type":"bridge","bridge":"berthitest0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}]}`
	if err := os.WriteFile(filepath.Join(confDir, "10-itest.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "NetworkReady=true after a config appears", 10*time.Second, netReady)
	os.Remove(filepath.Join(confDir, "10-itest.conflist"))
	harness.WaitFor(t, "NetworkReady=false after the config goes", 10*time.Second, func() bool { return !netReady() })
}

func TestSocketModeStaleAndSecondDaemon(t *testing.T) {
	d := harness.New(t, "")
	// A stale socket left by a dead berthd is replaced.
	os.MkdirAll(filepath.Dir(d.Socket), 0o755)
	l, err := net.Listen("unix", d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	d.Start()
	st, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want srw-rw----", st.Mode())
	}

	// A second berthd on the same socket is refused with a clear error and
	// does not disturb the first.
	out, err := exec.Command(harness.Binary(t), "--config", d.Config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another berthd") {
		t.Errorf("second berthd: err=%v output=%s", err, out)
	}
	if _, err := d.RuntimeClient().Version(context.Background(), "v1"); err != nil {
		t.Errorf("first berthd disturbed: %v", err)
	}
}

func TestBadConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		want        []string
	}{
		{"typo", "lsiten = \"x\"\n", []string{"lsiten", "unknown key"}},
		{"handler name", "[runtimes.\"Bad_Name\"]\ntype = \"libcontainer\"\n", []string{"Bad_Name", "DNS label"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := harness.New(t, tc.extra)
			out, err := exec.Command(harness.Binary(t), "--config", d.Config).CombinedOutput()
			if err == nil {
				t.Fatalf("berthd started with a bad config")
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
			if !strings.Contains(string(out), d.Config) {
				t.Errorf("output %q does not name the file", out)
			}
		})
	}
}

func TestConfigCommands(t *testing.T) {
	out, err := exec.Command(harness.Binary(t), "config", "default").Output()
	if err != nil || !strings.Contains(string(out), `listen = "/run/berth/berth.sock"`) {
		t.Fatalf("config default: %v\n%s", err, out)
	}
	d := harness.New(t, "")
	out, err = exec.Command(harness.Binary(t), "config", "check", "--config", d.Config).Output()
	if err != nil || !strings.Contains(string(out), d.Socket) || !strings.Contains(string(out), "[runtimes.runc]") {
		t.Fatalf("config check: %v\n%s", err, out)
	}
	out, err = exec.Command(harness.Binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "berthd ") {
		t.Fatalf("--version: %v %s", err, out)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	d := harness.New(t, "")
	d.Start()
	rt := d.RuntimeClient()
	ctx := context.Background()
	handlers := func() string {
		st, err := rt.Status(ctx, false)
		if err != nil {
			return err.Error()
		}
		var names []string
		for _, h := range st.RuntimeHandlers {
			names = append(names, h.Name)
		}
		return strings.Join(names, ",")
	}
	dropins := filepath.Join(d.Dir, "berth.d")
	os.Mkdir(dropins, 0o755)

	// An invalid new config is refused and the old one kept.
	os.WriteFile(filepath.Join(dropins, "10-bad.toml"), []byte("[runtimes.kata]\ntype = \"vm\"\n"), 0o644)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	harness.WaitFor(t, "the reload error in the log", 10*time.Second, func() bool { return d.Logs.Contains("keeping the current config") })
	if got := handlers(); got != ",runc" {
		t.Errorf("handlers after a bad reload: %q", got)
	}

	// A valid one adds the handler without a restart, applies a live key
	// and keeps a restart-only one at its running value, which verbose
	// Status goes on reporting.
	os.WriteFile(filepath.Join(dropins, "10-bad.toml"), []byte("max_exec_output = 1048576\n"+
		"[registry]\nimage_pull_progress_timeout = \"7m\"\n"+
		"[runtimes.kata]\ntype = \"oci\"\nruntime_path = \"/usr/bin/kata-runtime\"\n"), 0o644)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	harness.WaitFor(t, "handler kata after reload", 10*time.Second, func() bool { return handlers() == ",kata,runc" })
	if !d.Logs.Contains("key=max_exec_output") {
		t.Error("no restart-only warning for max_exec_output")
	}
	st, err := rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		MaxExecOutput int `json:"max_exec_output"`
		Registry      struct {
			ImagePullProgressTimeout string `json:"image_pull_progress_timeout"`
		} `json:"registry"`
	}
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxExecOutput != 16252928 || cfg.Registry.ImagePullProgressTimeout != "7m0s" {
		t.Errorf("verbose Status after reload: max_exec_output %d (want the running 16252928), image_pull_progress_timeout %q (want 7m0s)",
			cfg.MaxExecOutput, cfg.Registry.ImagePullProgressTimeout)
	}
}

func condition(st *runtimeapi.RuntimeStatus, typ string) *runtimeapi.RuntimeCondition {
	for _, c := range st.GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	return &runtimeapi.RuntimeCondition{Type: typ}
}
