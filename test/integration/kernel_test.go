package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// These run on this machine's kernel and in the test VM's (6.1, before
// overlay's lowerdir+ and fd layers): docs/kernel.md.

// kernelStatus is the "kernel" entry of Status's verbose info.
type kernelStatus struct {
	Release                 string `json:"release"`
	RecursiveReadOnlyMounts bool   `json:"recursiveReadOnlyMounts"`
	OverlayLowerdirPlus     bool   `json:"overlayLowerdirPlus"`
	IDMappedRootfs          bool   `json:"idmappedRootfs"`
	IDMappedRootfsError     string `json:"idmappedRootfsError"`
}

func statusKernel(t *testing.T, rt internalapi.RuntimeService) (kernelStatus, *runtimeapi.StatusResponse) {
	t.Helper()
	st, err := rt.Status(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var k kernelStatus
	if err := json.Unmarshal([]byte(st.Info["kernel"]), &k); err != nil {
		t.Fatalf("Status info kernel %q: %v", st.Info["kernel"], err)
	}
	t.Logf("kernel as Status reports it: %+v", k)
	return k, st
}

// An image of 128 layers (busybox, then 127 of one file each) runs: past
// the page of mount options that kernels before 6.8 allow.
func TestKernelManyLayerImage(t *testing.T) {
	const n = 128
	e := newPodEnv(t, "kernel-many")
	k, _ := statusKernel(t, e.rt)
	if k.Release == "" {
		t.Error("Status reports no kernel release")
	}

	layers := []v1.Layer{harness.BusyboxLayer(t)}
	for i := 1; i < n; i++ {
		layers = append(layers, harness.Layer(t, []harness.TarEntry{
			{Name: "layers/", Dir: true, Mode: 0o755},
			{Name: fmt.Sprintf("layers/%d", i), Mode: 0o644, Body: []byte(fmt.Sprint(i))},
			{Name: "top", Mode: 0o644, Body: []byte(fmt.Sprint(i))},
		}))
	}
	e.reg.PushImage(t, "test/many:1", layers, v1.Config{
		Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
	e.image = e.reg.Host + "/test/many:1"
	ctx := context.Background()
	start := time.Now()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pulled := time.Since(start)
	id := e.run(t, e.containerConfig("many", "sh", "-c", `echo "layers $(ls /layers | wc -l) top $(cat /top)"`))
	st := e.waitExit(t, id)
	t.Logf("%d layers: pull %v, create+start+exit %v", n, pulled.Round(time.Millisecond), time.Since(start.Add(pulled)).Round(time.Millisecond))
	if st.ExitCode != 0 {
		t.Errorf("exit code %d: %s", st.ExitCode, st.Message)
	}
	out := strings.Join(logLines(t, filepath.Join(e.podCfg.LogDirectory, "many.log")), "\n")
	if want := fmt.Sprintf("stdout layers %d top %d", n-1, n-1); !strings.Contains(out, want) {
		t.Errorf("output %q, want %q", out, want)
	}
}

// On a kernel that cannot id-map a pod's rootfs, Status says so, with the
// reason in its verbose info, and a pod asking for a user namespace is
// refused with that reason instead of half made. (Where the kernel can,
// TestUserNamespacePod runs one.)
func TestKernelUserNamespaceUnsupported(t *testing.T) {
	d, _, _ := newPodDaemon(t, "")
	// Before the first Status: the probe needs a way through for a pod's
	// root, and its answer is kept.
	letOthersThrough(t, d.Dir)
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	k, st := statusKernel(t, rt)
	for _, h := range st.RuntimeHandlers {
		if h.GetFeatures().GetUserNamespaces() != k.IDMappedRootfs {
			t.Errorf("handler %q: user_namespaces %v, but the kernel probe says %v", h.Name, h.GetFeatures().GetUserNamespaces(), k.IDMappedRootfs)
		}
	}
	if k.IDMappedRootfs {
		// skip: platform
		t.Skipf("kernel %s id-maps the rootfs: TestUserNamespacePod covers it", k.Release)
	}
	if k.IDMappedRootfsError == "" {
		t.Error("user namespaces unsupported, and Status gives no reason")
	}
	cfg := usernsPod("kernel-userns-pod", false)
	cfg.LogDirectory = t.TempDir()
	pod, err := rt.RunPodSandbox(context.Background(), cfg, "")
	if err == nil {
		rt.StopPodSandbox(context.Background(), pod)
		rt.RemovePodSandbox(context.Background(), pod)
		t.Fatalf("kernel %s: a user-namespaced pod ran although Status says it cannot", k.Release)
	}
	t.Logf("kernel %s: %v", k.Release, err)
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("err = %v, want FailedPrecondition", err)
	}
}
