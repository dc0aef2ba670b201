package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// httpGet fetches url until it answers or the deadline passes.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	var last error
	var body string
	if !testsupport.Poll(15*time.Second, 100*time.Millisecond, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			last = err
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	}) {
		t.Fatalf("GET %s: %v", url, last)
	}
	return body
}

// TestPodNetworkReachable: a web server in a pod answers on the pod IP
// from the host, and on a host port through its port mapping.
func TestPodNetworkReachable(t *testing.T) {
	d, reg, pn := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	hostPort := harness.FreePort(t)
	e := &podEnv{d: d, reg: reg, rt: d.RuntimeClient(), img: d.ImageClient(), image: reg.Host + "/" + harness.BusyboxRepo}
	e.podCfg = podConfig("web", func(c *runtimeapi.PodSandboxConfig) {
		c.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(hostPort), HostIp: "127.0.0.1"}}
	})
	e.podCfg.LogDirectory = t.TempDir()
	ctx := context.Background()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, e.podCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	e.pod = pod
	t.Cleanup(func() { e.rt.StopPodSandbox(ctx, pod); e.rt.RemovePodSandbox(ctx, pod) })
	e.run(t, e.containerConfig("httpd", "sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"))
	st, _ := e.rt.PodSandboxStatus(ctx, pod, false)
	ip := st.Status.Network.GetIp()
	if !strings.HasPrefix(ip, pn.Prefix) {
		t.Fatalf("pod ip %q", ip)
	}
	if got := httpGet(t, fmt.Sprintf("http://%s:8080/", ip)); !strings.Contains(got, "hello-from-pod") {
		t.Errorf("pod IP answered %q", got)
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); !strings.Contains(got, "hello-from-pod") {
		t.Errorf("host port answered %q", got)
	}
}

// TestHostNetworkPodSeesHostInterfaces: a hostNetwork pod's container
// lists the host's network interfaces (the test's private bridge among them).
func TestHostNetworkPodSeesHostInterfaces(t *testing.T) {
	d, reg, pn := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	ctx := context.Background()
	e := &podEnv{d: d, reg: reg, rt: d.RuntimeClient(), img: d.ImageClient(), image: reg.Host + "/" + harness.BusyboxRepo}
	// A pod network pod first, so the test's bridge exists on the host.
	other, err := e.rt.RunPodSandbox(ctx, podConfig("other"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.StopPodSandbox(ctx, other); e.rt.RemovePodSandbox(ctx, other) })
	e.podCfg = podConfig("hostnet", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	})
	e.podCfg.LogDirectory = t.TempDir()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, e.podCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	e.pod = pod
	t.Cleanup(func() { e.rt.StopPodSandbox(ctx, pod); e.rt.RemovePodSandbox(ctx, pod) })
	id := e.run(t, e.containerConfig("links", "cat", "/proc/net/dev"))
	st := e.waitExit(t, id)
	if out := strings.Join(logLines(t, st.LogPath), "\n"); !strings.Contains(out, pn.Bridge+":") {
		t.Errorf("host-network container does not see the host's %s:\n%s", pn.Bridge, out)
	}
}
