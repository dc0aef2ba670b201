// Package kubelet runs a real kubelet against berthd on a real node: systemd
// as PID 1, cgroup v2, kubelet's systemd cgroup driver taken from berthd's
// RuntimeConfig, berthd itself a systemd service. It is meant for the test VM
// (test/vm), where make test-vm runs it; elsewhere it skips.
//
// kubelet runs standalone (no API server): static pods from a manifest dir,
// their status read from its read-only port, as an operator debugging a node
// would.
package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/berth-cri/berth/internal/testsupport"
)

const (
	manifests = "/etc/kubernetes/manifests"
	endpoint  = "unix:///run/berth/berth.sock"
	readOnly  = "http://127.0.0.1:10255"
	busybox   = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
)

// node is what the test set up, for its checks and its cleanup.
type node struct {
	t       *testing.T
	rt      internalapi.RuntimeService
	kubelet *exec.Cmd
	logDir  string
}

func TestKubeletStaticPods(t *testing.T) {
	kubeletBin := os.Getenv("BERTH_KUBELET")
	if kubeletBin == "" {
		// skip: opt-in (the VM suite sets BERTH_KUBELET)
		t.Skip("BERTH_KUBELET (a kubelet binary) is not set: this test runs in the test VM (make test-vm)")
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		// skip: platform
		t.Skip("PID 1 is not systemd")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		// skip: platform
		t.Skip("not a cgroup v2 host")
	}
	n := setUp(t, kubeletBin)

	// The pods: a Guaranteed one with an exec readiness probe, and one whose
	// second container exceeds its memory limit while the first runs on.
	n.writePod("guaranteed", `
  containers:
  - name: main
    image: `+busybox+`
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 100000"]
    resources:
      limits: {cpu: 250m, memory: 64Mi}
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 5
      timeoutSeconds: 30
`)
	n.writePod("oom", `
  containers:
  - name: sleeper
    image: `+busybox+`
    command: ["sleep", "100000"]
  - name: hog
    image: `+busybox+`
    # dd fills a 64 MiB buffer: twice the limit.
    command: ["sh", "-c", "sleep 3; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 100000"]
    resources:
      limits: {memory: 32Mi}
`)

	// An unsigned image where the image policy wants a signature: the pull
	// is refused and kubelet shows why.
	n.writePod("unsigned", `
  containers:
  - name: main
    image: `+unsignedImage+`
    command: ["sleep", "100000"]
`)

	// Guaranteed: ready (its exec probe answered), limits in its scope.
	main := n.waitContainer("guaranteed", "main", func(c containerStatus) bool { return c.Ready })
	scope := n.scopeOf(main.id())
	expectFile(t, scope, "memory.max", "67108864")
	expectFile(t, scope, "cpu.max", "25000 100000")
	if !strings.Contains(scope, "/kubepods.slice/") || !strings.HasSuffix(scope, ".scope") {
		t.Errorf("container cgroup %s: want a scope under kubepods.slice", scope)
	}
	unit := filepath.Base(scope)
	for prop, want := range map[string]string{"Delegate": "yes", "MemoryMax": "67108864"} {
		if got := systemctlShow(t, unit, prop); got != want {
			t.Errorf("%s %s = %q, want %q", unit, prop, got, want)
		}
	}

	// OOM: the hog is OOMKilled, the sleeper and the pod run on.
	sleeper := n.waitContainer("oom", "sleeper", func(c containerStatus) bool { return c.State.Running != nil })
	n.waitContainer("oom", "hog", func(c containerStatus) bool {
		return c.State.Terminated.reason() == "OOMKilled" || c.LastState.Terminated.reason() == "OOMKilled"
	})
	if s := n.container("oom", "sleeper"); s.State.Running == nil || s.RestartCount != 0 || s.id() != sleeper.id() {
		t.Errorf("sleeper after the hog's OOM kill: %+v, want the same container running", s)
	}

	// The unsigned pod: ErrImagePull with berthd's reason. kubelet
	// alternates it with ImagePullBackOff between retries; polled until
	// the pull error itself is seen.
	refused := n.waitContainer("unsigned", "main", func(c containerStatus) bool {
		return c.State.Waiting != nil && c.State.Waiting.Reason == "ErrImagePull"
	})
	if msg := refused.State.Waiting.Message; !strings.Contains(msg, "no signature found") || !strings.Contains(msg, "berth-test/unsigned") {
		t.Errorf("unsigned image: kubelet shows %q, want the image policy's refusal", msg)
	}

	// berthd restarted under the running pods: nothing lost.
	before := n.runningContainers()
	restarts := n.container("guaranteed", "main").RestartCount
	run(t, "systemctl", "restart", "berthd.service")
	n.waitCRI()
	// Two probe periods: kubelet probes (exec through the new berthd) and
	// relists; the same containers still run, none restarted.
	time.Sleep(testsupport.Slow(12 * time.Second))
	after := n.runningContainers()
	for id, name := range before {
		if _, ok := after[id]; !ok && name != "hog" {
			t.Errorf("container %s (%s) no longer running after systemctl restart berthd", id, name)
		}
	}
	n.waitContainer("guaranteed", "main", func(c containerStatus) bool {
		return c.Ready && c.RestartCount == restarts && c.id() == main.id()
	})
	if s := n.container("oom", "sleeper"); s.RestartCount != 0 || s.id() != sleeper.id() {
		t.Errorf("sleeper after the restart: %+v", s)
	}
}

// setUp installs berthd as the systemd service hack/systemd describes, with
// the test registry as the mirror of registry.k8s.io and the sample CNI
// network, and starts kubelet.
func setUp(t *testing.T, kubeletBin string) *node {
	bin := os.Getenv("BERTHD_BIN")
	if bin == "" {
		t.Fatal("BERTHD_BIN is not set")
	}
	top, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	registry := os.Getenv("BERTH_TEST_REGISTRY")
	if registry == "" {
		registry = "127.0.0.1:5000"
	}
	for _, b := range []string{"berthd", "berth-supervisor"} {
		copyFile(t, filepath.Join(filepath.Dir(bin), b), "/usr/local/bin/"+b, 0o755)
	}
	writeFile(t, "/etc/berth/berth.toml", `sandbox_image = "registry.k8s.io/pause:3.10"
log_level = "debug"
`+writeImagePolicy(t, registry))
	writeFile(t, "/etc/berth/certs.d/registry.k8s.io/hosts.toml", fmt.Sprintf(`server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, registry, registry))
	run(t, filepath.Join(top, "hack/cni/install.sh"), "/etc/cni/net.d")
	for _, u := range []string{"berthd.service", "berthd.socket"} {
		copyFile(t, filepath.Join(top, "hack/systemd", u), "/etc/systemd/system/"+u, 0o644)
	}
	run(t, "systemctl", "daemon-reload")
	run(t, "systemctl", "start", "berthd.socket", "berthd.service")

	n := &node{t: t, logDir: os.Getenv("BERTH_TEST_LOGS")}
	if n.logDir == "" {
		n.logDir = t.TempDir()
	}
	t.Cleanup(n.tearDown)
	n.waitCRI()
	resp, err := n.rt.RuntimeConfig(context.Background())
	if err != nil {
		t.Fatalf("RuntimeConfig: %v", err)
	}
	if d := resp.GetLinux().GetCgroupDriver(); d != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("berthd reports cgroup driver %v on a systemd node, want SYSTEMD", d)
	}

	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	// Standalone: no API server, no authentication, the read-only port for
	// pod status. The cgroup driver is not set: kubelet takes berthd's, and
	// failCgroupV1 keeps its default (true).
	writeFile(t, "/var/lib/kubelet/config.yaml", `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: `+endpoint+`
staticPodPath: `+manifests+`
readOnlyPort: 10255
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
resolvConf: ""
failSwapOn: false
runtimeRequestTimeout: 10m
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
fileCheckFrequency: 2s
syncFrequency: 5s
`)
	log, err := os.Create(filepath.Join(n.logDir, "kubelet-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	n.kubelet = exec.Command(kubeletBin, "--config=/var/lib/kubelet/config.yaml", "--v=2")
	n.kubelet.Stdout, n.kubelet.Stderr = log, log
	if err := n.kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "kubelet's read-only port", 3*time.Minute, func() bool {
		_, err := n.pods()
		return err == nil
	})
	return n
}

// waitCRI waits until berthd answers and is ready.
func (n *node) waitCRI() {
	n.t.Helper()
	testsupport.PollUntil(n.t, "berthd ready", 2*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(10*time.Second))
		defer cancel()
		if n.rt == nil {
			rt, err := remote.NewRemoteRuntimeService(ctx, endpoint, testsupport.Slow(30*time.Second), nil, false)
			if err != nil {
				return false
			}
			n.rt = rt
		}
		st, err := n.rt.Status(ctx, false)
		return err == nil && st.GetStatus() != nil
	})
}

func (n *node) tearDown() {
	os.RemoveAll(manifests)
	// kubelet kills the static pods whose manifests went away.
	if n.kubelet != nil && n.kubelet.Process != nil {
		testsupport.Poll(testsupport.Slow(3*time.Minute), time.Second, func() bool { return len(n.runningContainers()) == 0 })
		n.kubelet.Process.Kill()
		n.kubelet.Wait()
	}
	if n.t.Failed() {
		for _, u := range []string{"berthd.service"} {
			out, _ := exec.Command("journalctl", "-u", u, "--no-pager", "-n", "200").CombinedOutput()
			os.WriteFile(filepath.Join(n.logDir, "journal-"+u+".log"), out, 0o644)
		}
		n.t.Logf("kubelet and berthd logs in %s", n.logDir)
	}
}

// The kubelet's view of a pod, the few fields read here (core/v1 JSON).
type podList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Phase             string            `json:"phase"`
			ContainerStatuses []containerStatus `json:"containerStatuses"`
		} `json:"status"`
	} `json:"items"`
}

type containerStatus struct {
	Name         string         `json:"name"`
	Ready        bool           `json:"ready"`
	RestartCount int            `json:"restartCount"`
	ContainerID  string         `json:"containerID"`
	State        containerState `json:"state"`
	LastState    containerState `json:"lastState"`
}

type containerState struct {
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting"`
	Running    *struct{}   `json:"running"`
	Terminated *terminated `json:"terminated"`
}

type terminated struct {
	Reason   string `json:"reason"`
	ExitCode int    `json:"exitCode"`
}

func (t *terminated) reason() string {
	if t == nil {
		return ""
	}
	return t.Reason
}

// id is the CRI container id ("berth://<id>" in the pod status).
func (c containerStatus) id() string {
	_, id, _ := strings.Cut(c.ContainerID, "://")
	return id
}

func (n *node) pods() (*podList, error) {
	resp, err := http.Get(readOnly + "/pods")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /pods: %s", resp.Status)
	}
	var l podList
	return &l, json.NewDecoder(resp.Body).Decode(&l)
}

// container is the status kubelet reports for pod/name now (a static pod's
// name is <name>-<node name>).
func (n *node) container(pod, name string) containerStatus {
	n.t.Helper()
	l, err := n.pods()
	if err != nil {
		n.t.Fatalf("kubelet /pods: %v", err)
	}
	for _, p := range l.Items {
		if !strings.HasPrefix(p.Metadata.Name, pod+"-") {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == name {
				return c
			}
		}
	}
	return containerStatus{}
}

// waitContainer waits until kubelet reports pod/name as cond wants.
func (n *node) waitContainer(pod, name string, cond func(containerStatus) bool) containerStatus {
	n.t.Helper()
	var last containerStatus
	testsupport.PollUntil(n.t, fmt.Sprintf("kubelet: %s/%s", pod, name), 4*time.Minute, func() bool {
		last = n.container(pod, name)
		return last.Name != "" && cond(last)
	})
	return last
}

// runningContainers maps the id of every running container to its name.
func (n *node) runningContainers() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(10*time.Second))
	defer cancel()
	out := map[string]string{}
	if n.rt == nil {
		return out
	}
	cs, err := n.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		n.t.Logf("ListContainers: %v", err)
		return out
	}
	for _, c := range cs {
		out[c.Id] = c.GetMetadata().GetName()
	}
	return out
}

// scopeOf is the cgroup directory of a running container, from its init's
// /proc/<pid>/cgroup.
func (n *node) scopeOf(id string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(10*time.Second))
	defer cancel()
	st, err := n.rt.ContainerStatus(ctx, id, true)
	if err != nil {
		n.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		n.t.Fatalf("ContainerStatus %s: no pid in the verbose info (%v): %v", id, err, st.GetInfo())
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Pid))
	if err != nil {
		n.t.Fatal(err)
	}
	rel := strings.TrimSpace(strings.TrimPrefix(string(data), "0::"))
	return filepath.Join("/sys/fs/cgroup", rel)
}

func expectFile(t *testing.T, dir, name, want string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if got := strings.TrimSpace(string(data)); got != want {
		t.Errorf("%s/%s = %q, want %q", dir, name, got, want)
	}
}

func systemctlShow(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "-P", prop, unit).Output()
	if err != nil {
		t.Errorf("systemctl show %s: %v", unit, err)
	}
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	// Beside the target, then renamed: a binary being replaced may still
	// run (ETXTBSY for a write in place).
	tmp := to + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// writePod writes a static pod manifest; spec is the pod spec's body.
func (n *node) writePod(name, spec string) {
	n.t.Helper()
	writeFile(n.t, filepath.Join(manifests, name+".yaml"), fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
  terminationGracePeriodSeconds: 2%s`, name, spec))
}
