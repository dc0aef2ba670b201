package integration

import (
	"context"
	"encoding/json"
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

// TestCreateByImageID creates a container the way kubelet does: image =
// the id PullImage returned, the name in user_specified_image. The status
// shows the name, the digested reference and the same id (CRI-CONTRACT:
// image_ref = Image.id = ContainerStatus.image_id = Container.image_id).
func TestCreateByImageID(t *testing.T) {
	e := newPodEnv(t, "byid")
	ctx := context.Background()
	imageRef, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.containerConfig("byid", "sleep", "100")
	cfg.Image = &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: e.image}
	cfg.Annotations = map[string]string{"io.kubernetes.container.hash": "abc", "x": "y"}
	cfg.LogPath = "" // critest's default: output discarded, not an error
	id := e.run(t, cfg)
	st, err := e.rt.ContainerStatus(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Status
	if s.Image.GetImage() != e.image || s.ImageId != imageRef || !strings.Contains(s.ImageRef, "@sha256:") {
		t.Errorf("image %q id %q ref %q; want %q, %q, a digested reference", s.Image.GetImage(), s.ImageId, s.ImageRef, e.image, imageRef)
	}
	if s.LogPath != "" || s.Annotations["x"] != "y" || s.Labels["c"] != "byid" {
		t.Errorf("log path %q annotations %v labels %v", s.LogPath, s.Annotations, s.Labels)
	}
	list, err := e.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: id})
	if err != nil || len(list) != 1 || list[0].ImageId != imageRef || list[0].Image == nil || list[0].ImageRef != s.ImageRef {
		t.Errorf("list: %+v %v", list, err)
	}

	// Resources after an update are reported and applied.
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 96 << 20}
	if err := e.rt.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: res}); err != nil {
		t.Fatal(err)
	}
	st, _ = e.rt.ContainerStatus(ctx, id, false)
	if got := st.Status.GetResources().GetLinux(); got.GetMemoryLimitInBytes() != 96<<20 || got.GetCpuShares() != 512 {
		t.Errorf("resources after update: %+v", got)
	}
	out, _, err := e.rt.ExecSync(ctx, id, []string{"sh", "-c", memLimitCmd}, 10*time.Second)
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(96<<20) {
		t.Errorf("memory limit in the cgroup: %q %v", out, err)
	}
}

// TestLargeMessages: kubelet's client sends up to 16 MiB messages; berthd
// must take them in (gRPC's default is 4 MiB: ResourceExhausted before any
// of berthd's code runs) and judge the content itself. 6 MiB of
// annotations are past the API server's 256 KiB, so the answer is berthd's
// InvalidArgument naming the field.
func TestLargeMessages(t *testing.T) {
	d, _, _ := newPodDaemon(t, "")
	d.Start()
	d.WaitReady()
	rt := d.RuntimeClient()
	ctx := context.Background()
	big := strings.Repeat("a", 6<<20)
	cfg := podConfig("big", func(c *runtimeapi.PodSandboxConfig) { c.Annotations["big"] = big })
	_, err := rt.RunPodSandbox(ctx, cfg, "")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "annotations") {
		t.Errorf("RunPodSandbox with 6 MiB of annotations: %v, want berthd's InvalidArgument on the annotations", err)
	}
}

// TestUnobservedExitIsUnknown kills the keeper and the supervisor, then
// the container while neither runs: its exit status is lost, and it must
// be reported as 255/Unknown, never 0 (CRI-CONTRACT). berthd restarts the
// keeper and supervisor by itself. (A supervisor killed alone loses
// nothing: TestSupervisorCrashLosesNothing.)
func TestUnobservedExitIsUnknown(t *testing.T) {
	e := newPodEnv(t, "unobserved")
	id := e.run(t, e.containerConfig("victim", "sleep", "1000"))
	ctx := context.Background()
	st, _ := e.rt.ContainerStatus(ctx, id, true)
	pid := infoPid(t, st.Info["info"])

	keeper, sup := e.d.KeeperPID(), supervisorPid(t, e.d)
	syscall.Kill(keeper, syscall.SIGKILL)
	syscall.Kill(sup, syscall.SIGKILL)
	harness.WaitFor(t, "the supervisor to die", 5*time.Second, func() bool { return syscall.Kill(sup, 0) != nil })
	syscall.Kill(pid, syscall.SIGKILL)

	got := e.waitExit(t, id)
	if got.ExitCode != 255 || got.Reason != "Unknown" || got.FinishedAt == 0 {
		t.Errorf("unobserved exit: code %d reason %q finished %d", got.ExitCode, got.Reason, got.FinishedAt)
	}
	if !e.d.Logs.Contains("starting it again") {
		t.Errorf("berthd did not restart the supervisor")
	}
	// The pod still works: a new container runs under the new supervisor.
	id2 := e.run(t, e.containerConfig("after", "sh", "-c", "exit 5"))
	if st := e.waitExit(t, id2); st.ExitCode != 5 {
		t.Errorf("container after the supervisor restart: exit %d", st.ExitCode)
	}
}

// infoPid reads "pid" from a verbose status info JSON.
func infoPid(t *testing.T, info string) int {
	t.Helper()
	var v struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil || v.Pid == 0 {
		t.Fatalf("no pid in %s: %v", info, err)
	}
	return v.Pid
}
