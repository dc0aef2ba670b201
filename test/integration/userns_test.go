package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// usernsHostID is where the test pod's ids start on the host.
const usernsHostID = 200000

func usernsPod(name string, hostNetwork bool) *runtimeapi.PodSandboxConfig {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	return podConfig(name, func(c *runtimeapi.PodSandboxConfig) {
		ns := &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}
		if hostNetwork {
			ns.Network = runtimeapi.NamespaceMode_NODE
		}
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	})
}

// letOthersThrough makes the test's temp dirs above dir searchable, as a
// node's /var/lib is: a pod's root is "others" to the host's directories.
func letOthersThrough(t *testing.T, dir string) {
	t.Helper()
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
			t.Fatal(err)
		}
	}
}

// hostUID is the real uid of pid as the host sees it (/proc/<pid>/status).
func hostUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}

func fileOwner(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// A pod in a user namespace (KEP-127, mode POD): root inside, uid 200000
// outside; it writes to an emptyDir-like volume (files owned by its host
// uid), to a volume kubelet asked to id-map (files owned by the on-disk ids
// it sees, root's as 0), and to its rootfs; it has its pod network.
func TestUserNamespacePod(t *testing.T) {
	d, reg, _ := newPodDaemon(t, "")
	letOthersThrough(t, d.Dir)
	d.Start()
	d.WaitReady()
	rt, ctx := d.RuntimeClient(), context.Background()

	st, err := rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	// Kernels before 6.13 cannot give overlayfs id-mapped layers: Berth
	// says so and refuses such pods (TestKernelUserNamespaceUnsupported).
	var kernel struct {
		Release        string `json:"release"`
		IDMappedRootfs bool   `json:"idmappedRootfs"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["kernel"]), &kernel); err == nil && !kernel.IDMappedRootfs {
		// skip: platform
		t.Skipf("kernel %s cannot id-map the rootfs; TestKernelUserNamespaceUnsupported covers it", kernel.Release)
	}
	for _, h := range st.RuntimeHandlers {
		if !h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q does not advertise user_namespaces", h.Name)
		}
	}
	if st.GetFeatures().GetUserNamespacesHostNetwork() {
		t.Error("user_namespaces_host_network advertised")
	}
	if _, err := rt.RunPodSandbox(ctx, usernsPod("userns-hostnet", true), ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("user namespace with host network: %v, want InvalidArgument", err)
	}

	e := &podEnv{d: d, reg: reg, rt: rt, img: d.ImageClient(), podCfg: usernsPod("userns", false), image: reg.Host + "/" + harness.BusyboxRepo}
	e.podCfg.LogDirectory = t.TempDir()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if e.pod, err = rt.RunPodSandbox(ctx, e.podCfg, ""); err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	t.Cleanup(func() {
		rt.StopPodSandbox(context.Background(), e.pod)
		rt.RemovePodSandbox(context.Background(), e.pod)
	})
	pst, err := rt.PodSandboxStatus(ctx, e.pod, false)
	if err != nil {
		t.Fatal(err)
	}
	podIP := pst.GetStatus().GetNetwork().GetIp()
	if podIP == "" {
		t.Errorf("no pod IP: %+v", pst.GetStatus().GetNetwork())
	}

	emptyDir := t.TempDir()
	if err := os.Chmod(emptyDir, 0o777); err != nil { // as kubelet makes an emptyDir
		t.Fatal(err)
	}
	mapped := t.TempDir() // root's 0755, id-mapped as kubelet asks for a user-namespaced pod
	kubeletMap := e.podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Uids
	cfg := e.containerConfig("probe", "sh", "-c",
		"id -u; cat /proc/self/uid_map; ls -lnd / /etc/hosts /mapped; touch /rootfs-write && echo rootfs-rw; "+
			"touch /empty/file && touch /mapped/file && echo volumes-rw; ip -4 addr show eth0; echo ready; sleep 300")
	cfg.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/empty", HostPath: emptyDir},
		{ContainerPath: "/mapped", HostPath: mapped, UidMappings: kubeletMap, GidMappings: kubeletMap},
	}
	id := e.run(t, cfg)
	logPath := filepath.Join(e.podCfg.LogDirectory, "probe.log")
	var out string
	harness.WaitFor(t, "the container's output", 20*time.Second, func() bool {
		if _, err := os.Stat(logPath); err != nil {
			return false
		}
		out = strings.Join(logLines(t, logPath), "\n")
		return strings.Contains(out, "stdout ready")
	})
	t.Logf("container output:\n%s", out)
	lines := map[string][]string{} // last field -> the line's fields
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			lines[f[len(f)-1]] = f
		}
	}
	has := func(fields ...string) bool {
		for _, f := range lines {
			if strings.Join(f, " ") == strings.Join(fields, " ") {
				return true
			}
		}
		return false
	}
	if !has("stdout", "0") || !has("stdout", "0", "200000", "65536") || !has("stdout", "rootfs-rw") || !has("stdout", "volumes-rw") {
		t.Errorf("want id -u 0, uid_map 0 200000 65536 and writes to the rootfs and volumes:\n%s", out)
	}
	if !strings.Contains(out, "inet "+podIP+"/") {
		t.Errorf("eth0 lacks the pod IP %s:\n%s", podIP, out)
	}
	// Inside, "/", the pod's /etc/hosts and the id-mapped volume are root's
	// (ls -ln: mode, links, uid, gid, ...).
	for _, p := range []string{"/", "/etc/hosts", "/mapped"} {
		if f := lines[p]; len(f) < 5 || f[3] != "0" || f[4] != "0" {
			t.Errorf("%s is not owned by 0:0 inside: %q\n%s", p, f, out)
		}
	}

	// From the host: the container's root is uid 200000.
	cst, err := rt.ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := hostUID(t, infoPid(t, cst.Info["info"])); got != "200000" {
		t.Errorf("container process runs as host uid %s, want 200000", got)
	}
	// An exec joins the pod's user namespace too.
	stdout, _, err := rt.ExecSync(ctx, id, []string{"sh", "-c", "id -u; cat /proc/self/uid_map"}, 10*time.Second)
	if err != nil || strings.Join(strings.Fields(string(stdout)), " ") != "0 0 200000 65536" {
		t.Errorf("exec: %v, stdout %q", err, stdout)
	}
	if got := fileOwner(t, filepath.Join(emptyDir, "file")); got != usernsHostID {
		t.Errorf("file written to the emptyDir is owned by host uid %d, want %d", got, usernsHostID)
	}
	if got := fileOwner(t, filepath.Join(mapped, "file")); got != 0 {
		t.Errorf("file written to the id-mapped volume is owned by host uid %d, want 0 (root inside)", got)
	}

	// Removing the pod leaves no network namespace pin behind.
	if err := rt.StopPodSandbox(ctx, e.pod); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemovePodSandbox(ctx, e.pod); err != nil {
		t.Fatal(err)
	}
	if pins, _ := os.ReadDir(filepath.Join(d.Dir, "run", "netns")); len(pins) != 0 {
		t.Errorf("netns pins left: %v", pins)
	}
}
