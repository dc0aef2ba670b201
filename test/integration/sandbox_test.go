package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podConfig(name string, mutate ...func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "itest", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(os.TempDir(), "berth-itest-logs", name),
		Labels:       map[string]string{"app": name, "suite": "integration"},
		Annotations:  map[string]string{"note": "kept unaltered"},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func TestSandboxLifecycle(t *testing.T) {
	d, _, pn := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()

	id, err := rt.RunPodSandbox(ctx, podConfig("web"), "")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	st, err := rt.PodSandboxStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Status
	if s.State != runtimeapi.PodSandboxState_SANDBOX_READY || !strings.HasPrefix(s.Network.GetIp(), pn.Prefix) {
		t.Fatalf("status %+v", s)
	}
	if s.Annotations["note"] != "kept unaltered" || s.Labels["app"] != "web" || s.Metadata.Name != "web" {
		t.Errorf("labels/annotations/metadata not echoed: %+v", s)
	}
	if st.Info["info"] == "" || st.Timestamp == 0 {
		t.Errorf("verbose info or timestamp missing: %v", st)
	}
	// List filters: by id prefix, state and label.
	for _, f := range []*runtimeapi.PodSandboxFilter{
		{Id: id[:12]},
		{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
		{LabelSelector: map[string]string{"app": "web"}},
	} {
		items, err := rt.ListPodSandbox(ctx, f)
		if err != nil || len(items) != 1 || items[0].Id != id {
			t.Errorf("list %v: %v %v", f, items, err)
		}
	}
	if items, _ := rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}); len(items) != 0 {
		t.Errorf("label filter matched %v", items)
	}

	// A second create with the same name, after the first was delivered, is refused.
	if _, err := rt.RunPodSandbox(ctx, podConfig("web"), ""); status.Code(err) != codes.AlreadyExists {
		t.Errorf("duplicate name: %v", err)
	}

	if err := rt.StopPodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err = rt.PodSandboxStatus(ctx, id, false)
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.Status.Network.GetIp() != "" {
		t.Errorf("after stop: %+v %v", st, err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := rt.StopPodSandbox(ctx, id); err != nil {
			t.Errorf("stop again: %v", err)
		}
		if err := rt.RemovePodSandbox(ctx, id); err != nil {
			t.Errorf("remove: %v", err)
		}
	}
	if _, err := rt.PodSandboxStatus(ctx, id, false); status.Code(err) != codes.NotFound {
		t.Errorf("status of removed sandbox: %v, want NotFound", err)
	}
	// Unknown ids: stop and remove succeed, status is NotFound.
	unknown := strings.Repeat("ab", 32)
	if err := rt.StopPodSandbox(ctx, unknown); err != nil {
		t.Errorf("stop unknown: %v", err)
	}
	if err := rt.RemovePodSandbox(ctx, unknown); err != nil {
		t.Errorf("remove unknown: %v", err)
	}
}

func TestSandboxHostNetworkWithoutCNI(t *testing.T) {
	d, _, _ := newPodDaemon(t, "")
	// CNI installers run as host-network pods while no CNI config exists.
	os.RemoveAll(filepath.Join(d.Dir, "net.d"))
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()
	hostNet := func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	}
	id, err := rt.RunPodSandbox(ctx, podConfig("hostnet", hostNet), "")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	st, err := rt.PodSandboxStatus(ctx, id, false)
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("%+v %v", st, err)
	}
	if got := st.Status.Linux.GetNamespaces().GetOptions().GetNetwork(); got != runtimeapi.NamespaceMode_NODE {
		t.Errorf("namespace options not echoed: network %v", got)
	}
	// A pod network pod, by contrast, cannot start without a network.
	if _, err := rt.RunPodSandbox(ctx, podConfig("podnet"), ""); err == nil {
		t.Error("pod network sandbox started without a CNI config")
	}
	if items, _ := rt.ListPodSandbox(ctx, nil); len(items) != 1 {
		t.Errorf("a failed RunPodSandbox left a sandbox behind: %v", items)
	}
	rt.StopPodSandbox(ctx, id)
	rt.RemovePodSandbox(ctx, id)
}

func TestSandboxBadInputLeavesNothing(t *testing.T) {
	d, _, pn := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()
	// Warm up: the first pod pulls the pause image and opens what stays open.
	warm, err := rt.RunPodSandbox(ctx, podConfig("warm"), "")
	if err != nil {
		t.Fatal(err)
	}
	rt.StopPodSandbox(ctx, warm)
	rt.RemovePodSandbox(ctx, warm)
	before := d.Resources(pn)

	_, err = rt.RunPodSandbox(ctx, podConfig("a"), "no-such-handler")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "runc") {
		t.Errorf("unknown handler: %v, want InvalidArgument listing the handlers", err)
	}
	badSysctl := func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"kernel.panic": "1"} }
	if _, err := rt.RunPodSandbox(ctx, podConfig("b", badSysctl), ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("non-namespaced sysctl: %v, want InvalidArgument", err)
	}
	noMeta := podConfig("c")
	noMeta.Metadata.Uid = ""
	if _, err := rt.RunPodSandbox(ctx, noMeta, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("metadata without uid: %v", err)
	}
	if items, _ := rt.ListPodSandbox(ctx, nil); len(items) != 0 {
		t.Errorf("sandboxes left: %v", items)
	}
	if after := d.Resources(pn); after.Differ(before) {
		t.Errorf("resources leaked:\nbefore %s\nafter  %s", before, after)
	}
}

func TestSandboxCyclesLeakNothing(t *testing.T) {
	d, _, pn := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()
	// One warm-up cycle: the first pod pulls the pause image and sets up
	// the bridge, which stay.
	cycle := func(i int) {
		id, err := rt.RunPodSandbox(ctx, podConfig("cycle", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Attempt = uint32(i) }), "")
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := rt.StopPodSandbox(ctx, id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := rt.RemovePodSandbox(ctx, id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	cycle(0)
	before := d.Resources(pn)
	const n = 100
	for i := 1; i <= n; i++ {
		cycle(i)
	}
	after := d.Resources(pn)
	t.Logf("after %d run/stop/remove cycles: %s", n, after)
	if after.Differ(before) {
		t.Errorf("resources leaked:\nbefore %s\nafter  %s", before, after)
	}
}

func TestSandboxSurvivesBerthdKill(t *testing.T) {
	d, _, _ := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()
	id, err := rt.RunPodSandbox(ctx, podConfig("survivor"), "")
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := rt.PodSandboxStatus(ctx, id, true)

	d.Cmd.Process.Signal(syscall.SIGKILL)
	<-d.Exited
	d.Start()
	d.WaitReady()
	rt = d.RuntimeClient()
	st2, err := rt.PodSandboxStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st2.Status.Network.GetIp() != st1.Status.Network.GetIp() || st2.Info["info"] != st1.Info["info"] {
		t.Errorf("after berthd restart:\n%+v\nwant\n%+v", st2, st1)
	}
	if err := rt.StopPodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemovePodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
}
