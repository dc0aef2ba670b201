package integration

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// testCriu is hack/install-criu.sh's CRIU (make test runs it first).
const testCriu = "/usr/local/sbin/criu"

func requireCriu(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(testCriu, "--version").Output(); err != nil || !strings.Contains(string(out), "Version: 4.") {
		t.Fatalf("CRIU 4.x is needed at %s (hack/install-criu.sh installs it): %v", testCriu, err)
	}
}

// counterCmd counts in memory, printing each value and writing it to a
// file of the container's writable layer; it also adds a file to that layer
// and deletes one of the image's.
var counterCmd = []string{"sh", "-c", "echo before > /marker; rm -f /bin/yes; i=0; while :; do i=$((i+1)); echo $i; echo $i > /count; sleep 0.1; done"}

// lastLogCount is the last number the counter printed to its CRI log.
func lastLogCount(t *testing.T, path string) int {
	t.Helper()
	lines := logLines(t, path)
	if len(lines) == 0 {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "stdout "))
	if err != nil {
		t.Fatalf("log line %q: %v", lines[len(lines)-1], err)
	}
	return n
}

func waitLogCount(t *testing.T, path string, n int) {
	t.Helper()
	harness.WaitFor(t, fmt.Sprintf("count %d in %s", n, path), 20*time.Second, func() bool {
		_, err := os.Stat(path)
		return err == nil && lastLogCount(t, path) >= n
	})
}

// tarNames lists the entries of the tar at path.
func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}

// startCounter runs the counter in pod podName of a berthd using
// testCriu, and waits for it to count to 5.
func startCounter(t *testing.T, podName string) (e *podEnv, id, logPath string) {
	t.Helper()
	requireCriu(t)
	e = startPodEnv(t, podName, fmt.Sprintf("criu_path = %q\n", testCriu), "")
	id = e.run(t, e.containerConfig("counter", counterCmd...))
	logPath = filepath.Join(e.podCfg.LogDirectory, "counter.log")
	waitLogCount(t, logPath, 5)
	return e, id, logPath
}

// TestCheckpointContainer is the acceptance: a counting busybox is
// checkpointed with crictl checkpoint while it runs (and keeps counting),
// the archive has the layout checkpointctl reads, and a new pod restores
// it: the count goes on from its checkpointed value, in a log of its own.
func TestCheckpointContainer(t *testing.T) {
	e, id, logPath := startCounter(t, "ckpt")
	ctx := context.Background()

	location := filepath.Join(t.TempDir(), "counter.tar")
	before := lastLogCount(t, logPath)
	start := time.Now()
	if out, err := e.crictl("checkpoint", "--export="+location, id).CombinedOutput(); err != nil {
		t.Fatalf("crictl checkpoint: %v\n%s\n%s", err, out, e.d.Logs)
	}
	t.Logf("crictl checkpoint took %v", time.Since(start))
	// It keeps running, and counting.
	st, err := e.rt.ContainerStatus(ctx, id, false)
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after checkpoint: %v, %v", st, err)
	}
	waitLogCount(t, logPath, before+10)

	names := tarNames(t, location)
	for _, want := range []string{"checkpoint/inventory.img", "checkpoint/descriptors.json", "config.dump", "spec.dump",
		"rootfs-diff.tar", "deleted.files", "dump.log", "stats-dump", "container.log"} {
		if !names[want] {
			t.Errorf("archive lacks %s (has %v)", want, names)
		}
	}
	if ctl, err := exec.LookPath("checkpointctl"); err == nil {
		out, err := exec.Command(ctl, "show", location).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "counter") {
			t.Errorf("checkpointctl show: %v\n%s", err, out)
		}
		t.Logf("checkpointctl show:\n%s", out)
		out, err = exec.Command(ctl, "inspect", "--all", location).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "counter") {
			t.Errorf("checkpointctl inspect: %v\n%s", err, out)
		}
		t.Logf("checkpointctl inspect --all:\n%s", out)
	}

	// A new pod restores it: a container whose image is the archive.
	e.rt.StopContainer(ctx, id, 0)
	rid, _, pod2Cfg, first := restoreCounter(t, e, "ckpt-restored", location)
	restoredLog := filepath.Join(pod2Cfg.LogDirectory, "counter.log")
	if first <= before || first > before+15 {
		t.Fatalf("the restored counter starts at %d; the checkpoint was taken after %d (within ~1.5s)", first, before)
	}
	// The writable layer came along: the file added, the file deleted.
	if out, _, err := e.rt.ExecSync(ctx, rid, []string{"cat", "/marker"}, 5*time.Second); err != nil || strings.TrimSpace(string(out)) != "before" {
		t.Errorf("restored /marker: %q, %v", out, err)
	}
	if out, _, err := e.rt.ExecSync(ctx, rid, []string{"sh", "-c", "test -e /bin/yes && echo present || echo gone"}, 5*time.Second); err != nil || strings.TrimSpace(string(out)) != "gone" {
		t.Errorf("restored /bin/yes, deleted before the checkpoint: %q, %v", out, err)
	}
	// Supervised like any container: it survives berthd's kill -9, and
	// its count goes on.
	e.d.Cmd.Process.Signal(syscall.SIGKILL)
	<-e.d.Exited
	e.d.Start()
	e.d.WaitReady()
	e.rt = e.d.RuntimeClient()
	rst, err := e.rt.ContainerStatus(ctx, rid, false)
	if err != nil || rst.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("restored container after berthd's restart: %v, %v", rst, err)
	}
	waitLogCount(t, restoredLog, lastLogCount(t, restoredLog)+5)
	if err := e.rt.StopContainer(ctx, rid, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.RemoveContainer(ctx, rid); err != nil {
		t.Fatal(err)
	}

	// Verbose Status says which CRIU is used.
	vst, err := e.rt.Status(ctx, true)
	if err != nil || !strings.Contains(vst.Info["criu"], `"version":"4.`) || strings.Contains(vst.Info["criu"], `"error"`) {
		t.Errorf("verbose Status criu: %q, %v", vst.GetInfo()["criu"], err)
	}

	// Precise errors.
	for _, tc := range []struct {
		id, location string
		code         codes.Code
	}{
		{"no-such-container", location, codes.NotFound},
		{id, "relative.tar", codes.InvalidArgument},
		{id, "/nonexistent-dir/x.tar", codes.InvalidArgument},
	} {
		err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: tc.id, Location: tc.location})
		if status.Code(err) != tc.code {
			t.Errorf("checkpoint %s to %s: %v, want %s", tc.id, tc.location, err, tc.code)
		}
	}
}

// TestCheckpointImage: a checkpoint archive made into an OCI image (its
// files as the one layer, CRI-O's annotation on the manifest, as `buildah
// add` + `buildah config --annotation` make it), pushed and pulled like
// any image, restores in a new pod: CreateContainer naming the image makes
// a created container whose counter goes on from the checkpoint. An image
// with the annotation (here checkpointctl's) whose layer is no checkpoint
// is refused with InvalidArgument.
func TestCheckpointImage(t *testing.T) {
	e, id, logPath := startCounter(t, "ckpt-img")
	ctx := context.Background()
	location := filepath.Join(t.TempDir(), "counter.tar")
	before := lastLogCount(t, logPath)
	if err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: location}); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, e.d.Logs)
	}
	after := lastLogCount(t, logPath)
	e.rt.StopContainer(ctx, id, 0)

	layer, err := tarball.LayerFromFile(location)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.PushAnnotatedImage(t, "test/counter-checkpoint:1", []v1.Layer{layer}, v1.Config{},
		map[string]string{"io.kubernetes.cri-o.annotations.checkpoint.name": "counter"})
	ckptImage := e.reg.Host + "/test/counter-checkpoint:1"
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ckptImage}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ckptImage}, false); err != nil || st.GetImage().GetSpec().GetAnnotations()["io.kubernetes.cri-o.annotations.checkpoint.name"] != "counter" {
		t.Errorf("ImageStatus of the checkpoint image: %v, %v; want its manifest's annotations", st, err)
	}

	// Off by default (checkpoint_images): refused until a reload turns it on.
	_, err = e.rt.CreateContainer(ctx, e.pod, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "too-early"}, Image: &runtimeapi.ImageSpec{Image: ckptImage},
	}, e.podCfg)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "checkpoint_images") {
		t.Fatalf("create from a checkpoint image while checkpoint_images is off: %v, want FailedPrecondition", err)
	}
	dropins := filepath.Join(e.d.Dir, "berth.d")
	os.Mkdir(dropins, 0o755)
	if err := os.WriteFile(filepath.Join(dropins, "10-checkpoint-images.toml"), []byte("checkpoint_images = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.d.Cmd.Process.Signal(syscall.SIGHUP)
	harness.WaitFor(t, "the reload", 10*time.Second, func() bool { return e.d.Logs.Contains("reloaded the config") })

	rid, pod2, pod2Cfg, first := restoreCounter(t, e, "ckpt-img-restored", ckptImage)
	restoredLog := filepath.Join(pod2Cfg.LogDirectory, "counter.log")
	if first <= before || first > after+1 {
		t.Fatalf("the restored counter starts at %d; it was at %d before the checkpoint and %d after", first, before, after)
	}
	waitLogCount(t, restoredLog, first+5)
	if out, _, err := e.rt.ExecSync(ctx, rid, []string{"cat", "/marker"}, 5*time.Second); err != nil || strings.TrimSpace(string(out)) != "before" {
		t.Errorf("restored /marker: %q, %v", out, err)
	}
	// It holds the checkpointed image, not the checkpoint image, which
	// can go.
	if err := e.rt.StopContainer(ctx, rid, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: ckptImage}); err != nil {
		t.Fatal(err)
	}

	// Annotated images that are no checkpoint.
	ann := map[string]string{"org.criu.checkpoint.container.name": "counter"}
	notCkpt := harness.Layer(t, []harness.TarEntry{{Name: "hello", Mode: 0o644, Body: []byte("world")}})
	e.reg.PushAnnotatedImage(t, "test/not-a-checkpoint:1", []v1.Layer{notCkpt}, v1.Config{}, ann)
	e.reg.PushAnnotatedImage(t, "test/two-layers:1", []v1.Layer{notCkpt, harness.Layer(t, []harness.TarEntry{{Name: "b", Mode: 0o644, Body: []byte("c")}})}, v1.Config{}, ann)
	for _, tc := range []struct{ repo, want string }{
		{"test/not-a-checkpoint:1", "not a checkpoint"},
		{"test/two-layers:1", "has 2 layers"},
	} {
		ref := e.reg.Host + "/" + tc.repo
		if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil); err != nil {
			t.Fatal(err)
		}
		_, err := e.rt.CreateContainer(ctx, pod2, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "bad-" + strings.Split(strings.TrimPrefix(tc.repo, "test/"), ":")[0]},
			Image:    &runtimeapi.ImageSpec{Image: ref},
		}, pod2Cfg)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create from %s: %v, want InvalidArgument with %q", tc.repo, err, tc.want)
		}
	}
}

// restoreCounter creates (checking CONTAINER_CREATED) and starts the
// counter from image (an archive's path or a checkpoint image) in a new
// pod podName, and returns the container, the pod, its config and the
// restored counter's first value.
func restoreCounter(t *testing.T, e *podEnv, podName, image string) (string, string, *runtimeapi.PodSandboxConfig, int) {
	t.Helper()
	ctx := context.Background()
	podCfg := podConfig(podName)
	podCfg.LogDirectory = t.TempDir()
	pod, err := e.rt.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.rt.StopPodSandbox(context.Background(), pod)
		e.rt.RemovePodSandbox(context.Background(), pod)
	})
	start := time.Now()
	rid, err := e.rt.CreateContainer(ctx, pod, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "counter"},
		Image:    &runtimeapi.ImageSpec{Image: image},
		LogPath:  "counter.log",
	}, podCfg)
	if err != nil {
		t.Fatalf("create from checkpoint %s: %v\n%s", image, err, e.d.Logs)
	}
	rst, err := e.rt.ContainerStatus(ctx, rid, false)
	if err != nil || rst.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("restored container before start: %v, %v", rst, err)
	}
	if err := e.rt.StartContainer(ctx, rid); err != nil {
		t.Fatalf("start from checkpoint %s: %v\n%s", image, err, e.d.Logs)
	}
	t.Logf("restore from %s (create + start) took %v", image, time.Since(start))
	restoredLog := filepath.Join(podCfg.LogDirectory, "counter.log")
	waitLogCount(t, restoredLog, 0)
	first, err := strconv.Atoi(strings.TrimPrefix(logLines(t, restoredLog)[0], "stdout "))
	if err != nil {
		t.Fatal(err)
	}
	return rid, pod, podCfg, first
}

// TestCheckpointPod: a pod with two counting containers is checkpointed as
// a whole (both keep running), then restored into a fresh sandbox where
// both counts go on; a restore that fails half-way (the second container's
// command does not match the checkpoint) leaves no sandbox or container.
func TestCheckpointPod(t *testing.T) {
	requireCriu(t)
	e := startPodEnv(t, "ckpod", fmt.Sprintf("criu_path = %q\n", testCriu), "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := map[string]string{}
	for _, name := range []string{"a", "b"} {
		ids[name] = e.run(t, e.containerConfig(name, counterCmd...))
	}
	for name := range ids {
		waitLogCount(t, filepath.Join(e.podCfg.LogDirectory, name+".log"), 3)
	}
	before := map[string]int{}
	for name := range ids {
		before[name] = lastLogCount(t, filepath.Join(e.podCfg.LogDirectory, name+".log"))
	}
	out := t.TempDir()
	start := time.Now()
	if err := e.rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: e.pod, OutputPath: out, ContainerIds: []string{ids["a"], ids["b"]}}); err != nil {
		t.Fatalf("CheckpointPod: %v\n%s", err, e.d.Logs)
	}
	t.Logf("CheckpointPod of 2 containers took %v", time.Since(start))
	for name, id := range ids {
		waitLogCount(t, filepath.Join(e.podCfg.LogDirectory, name+".log"), before[name]+5) // resumed
		if _, err := os.Stat(filepath.Join(out, name, "checkpoint", "inventory.img")); err != nil {
			t.Errorf("container %s (%s): %v", name, id, err)
		}
	}
	for _, f := range []string{"pod.options", "pod.dump"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// The output directory must be empty.
	if err := e.rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: e.pod, OutputPath: out, ContainerIds: []string{ids["a"]}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CheckpointPod into a non-empty directory: %v", err)
	}

	podsBefore, _ := e.rt.ListPodSandbox(ctx, nil)
	ctrsBefore, _ := e.rt.ListContainers(ctx, nil)
	newPod := podConfig("ckpod-restored")
	newPod.LogDirectory = t.TempDir()
	cfg := func(name string, cmd ...string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, LogPath: name + ".log", Command: cmd}
	}
	// Half-way failure: a is made, then b's command does not match.
	_, err := e.rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: newPod,
		ContainerConfigs: []*runtimeapi.ContainerConfig{cfg("a"), cfg("b", "sleep", "1")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("RestorePod with a mismatching command: %v", err)
	}
	podsAfter, _ := e.rt.ListPodSandbox(ctx, nil)
	ctrsAfter, _ := e.rt.ListContainers(ctx, nil)
	if len(podsAfter) != len(podsBefore) || len(ctrsAfter) != len(ctrsBefore) {
		t.Fatalf("a failed RestorePod left %d pods (was %d), %d containers (was %d)\n%s", len(podsAfter), len(podsBefore), len(ctrsAfter), len(ctrsBefore), e.d.Logs)
	}

	start = time.Now()
	resp, err := e.rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: newPod,
		ContainerConfigs: []*runtimeapi.ContainerConfig{cfg("a"), cfg("b")}})
	if err != nil {
		t.Fatalf("RestorePod: %v\n%s", err, e.d.Logs)
	}
	t.Cleanup(func() {
		e.rt.StopPodSandbox(context.Background(), resp.PodSandboxId)
		e.rt.RemovePodSandbox(context.Background(), resp.PodSandboxId)
	})
	if len(resp.RestoredContainers) != 2 {
		t.Fatalf("restored %v", resp.RestoredContainers)
	}
	for _, rc := range resp.RestoredContainers {
		st, err := e.rt.ContainerStatus(ctx, rc.ContainerId, false)
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Fatalf("restored %s before start: %v, %v", rc.Name, st, err)
		}
		if err := e.rt.StartContainer(ctx, rc.ContainerId); err != nil {
			t.Fatalf("start restored %s: %v\n%s", rc.Name, err, e.d.Logs)
		}
	}
	t.Logf("RestorePod + 2 starts took %v", time.Since(start))
	for _, rc := range resp.RestoredContainers {
		path := filepath.Join(newPod.LogDirectory, rc.Name+".log")
		waitLogCount(t, path, 0)
		first, err := strconv.Atoi(strings.TrimPrefix(logLines(t, path)[0], "stdout "))
		if err != nil || first <= before[rc.Name] {
			t.Errorf("restored %s starts at %d (%v); checkpointed after %d", rc.Name, first, err, before[rc.Name])
		}
	}
}

// TestCheckpointFaultRestore kills berthd in the middle of a restore from a
// checkpoint archive: during CreateContainer (rolled back: no record,
// rootfs, unpacked archive or mount left) and right after the supervisor
// restored the processes in StartContainer (completed: the container is
// running and supervised, nothing orphaned).
func TestCheckpointFaultRestore(t *testing.T) {
	requireCriu(t)
	e := newFaultEnv(t)
	ctx := context.Background()
	pod, err := e.rt.RunPodSandbox(ctx, e.podConfig("src"), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.containerConfig("counter")
	cfg.Command = counterCmd
	// As kubelet sends: a pid namespace of its own. Sharing the pod's,
	// CRIU must restore the checkpointed pids beside the pause's (here a Go
	// binary, whose threads take a varying number of them).
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
	}}
	id, err := e.rt.CreateContainer(ctx, pod, cfg, e.podConfig("src"))
	if err == nil {
		err = e.rt.StartContainer(ctx, id)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitLogCount(t, filepath.Join(e.logDir, "counter.log"), 3)
	location := filepath.Join(t.TempDir(), "counter.tar")
	if err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: location}); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, e.d.Logs)
	}
	e.removeAll(t)
	restoreCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "restored"},
		Image: &runtimeapi.ImageSpec{Image: location}, LogPath: "restored.log"}
	checkpoints := filepath.Join(e.d.Dir, "root", "checkpoints")
	unpacked := func() []string {
		entries, _ := os.ReadDir(checkpoints)
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		return names
	}

	pod, err = e.rt.RunPodSandbox(ctx, e.podConfig("dst"), "")
	if err != nil {
		t.Fatal(err)
	}
	e.crash(t, "container.restore-after-rootfs", func(ctx context.Context) error {
		_, err := e.rt.CreateContainer(ctx, pod, restoreCfg, e.podConfig("dst"))
		return err
	})
	if ctrs, _ := e.rt.ListContainers(ctx, nil); len(ctrs) != 0 {
		t.Errorf("containers after the roll-back: %v", ctrs)
	}
	if left := unpacked(); len(left) != 0 {
		t.Errorf("unpacked checkpoints left: %v", left)
	}
	e.checkConsistent(t)

	rid, err := e.rt.CreateContainer(ctx, pod, restoreCfg, e.podConfig("dst"))
	if err != nil {
		t.Fatalf("create from checkpoint after the crash: %v\n%s", err, e.d.Logs)
	}
	e.crash(t, "container.after-restore", func(ctx context.Context) error {
		return e.rt.StartContainer(ctx, rid)
	})
	st, err := e.rt.ContainerStatus(ctx, rid, false)
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("restored container after the crash: %+v %v\n%s", st, err, e.d.Logs)
	}
	waitLogCount(t, filepath.Join(e.logDir, "restored.log"), 1)
	e.checkConsistent(t)
	e.checkNoLeak(t)
	if left := unpacked(); len(left) != 0 {
		t.Errorf("unpacked checkpoints left after removal: %v", left)
	}
}

// TestCheckpointWithoutCriu: without a usable CRIU, berthd runs, and
// checkpoint and restore answer Unimplemented with the reason.
func TestCheckpointWithoutCriu(t *testing.T) {
	e := startPodEnv(t, "nocriu", `criu_path = "/nonexistent/criu"`+"\n", "")
	ctx := context.Background()
	id := e.run(t, e.containerConfig("sleeper", "sleep", "1000"))
	err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: filepath.Join(t.TempDir(), "x.tar")})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "/nonexistent/criu") {
		t.Errorf("CheckpointContainer without CRIU: %v", err)
	}
	archive := filepath.Join(t.TempDir(), "x.tar")
	os.WriteFile(archive, nil, 0o600)
	_, err = e.rt.CreateContainer(ctx, e.pod, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "r"},
		Image: &runtimeapi.ImageSpec{Image: archive}, LogPath: "r.log"}, e.podCfg)
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("restore without CRIU: %v", err)
	}
	st, err := e.rt.Status(ctx, true)
	if err != nil || !strings.Contains(st.Info["criu"], "/nonexistent/criu") {
		t.Errorf("verbose Status criu: %q, %v", st.GetInfo()["criu"], err)
	}
}
