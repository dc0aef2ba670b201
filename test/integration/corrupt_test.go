package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// truncate cuts a file to its first 20 bytes, as a crash of a filesystem
// without data journaling may leave it: less than a record file's first
// slot header, so no version of the record survives (a record file cut
// further on keeps its older slot, and is read as that version).
func truncate(t *testing.T, path string) {
	t.Helper()
	if err := os.Truncate(path, 20); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptStateAtStartup damages berthd's state while it is down: a
// truncated sandbox record, container record and image record, a deleted
// content blob, a half-written snapshot and a record's temp file. berthd
// must start, report each damaged object, clean what belonged to it, and
// serve the rest as before.
func TestCorruptStateAtStartup(t *testing.T) {
	e := newFaultEnv(t)
	ctx := context.Background()
	keepPod, keepCtr := e.sync(t, "keep", "app", true)
	_, victimCtr := e.sync(t, "keep", "victim", true)
	victimPod, err := e.rt.RunPodSandbox(ctx, e.podConfig("victim"), "")
	if err != nil {
		t.Fatal(err)
	}
	recImg := e.reg.Push(t, "corrupt/record", "v1", 2)
	blobImg := e.reg.Push(t, "corrupt/blob", "v1", 2)
	refs := map[string]string{"record": e.reg.Host + "/corrupt/record:v1", "blob": e.reg.Host + "/corrupt/blob:v1"}
	for _, ref := range refs {
		if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.d.Stop()

	root := filepath.Join(e.d.Dir, "root")
	truncate(t, filepath.Join(root, "sandboxes", victimPod+".json"))
	truncate(t, filepath.Join(root, "containers", victimCtr+".json"))
	recCfg, _ := recImg.ConfigName()
	truncate(t, filepath.Join(root, "images", recCfg.Hex+".json"))
	blobCfg, _ := blobImg.ConfigName()
	if err := os.Remove(filepath.Join(root, "content", "blobs", "sha256", blobCfg.Hex)); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(root, "snapshots", "tmp", "unpack-crashed", "diff", "etc")
	os.MkdirAll(half, 0o755)
	os.WriteFile(filepath.Join(half, "partial"), []byte("half a fi"), 0o644)
	os.WriteFile(filepath.Join(root, "sandboxes", "."+keepPod+".json.tmp-123"), []byte(`{"ID":`), 0o600)

	e.d.Start()
	e.d.WaitReady()
	e.connect()

	for _, want := range []string{
		"dropping a sandbox record that cannot be read", victimPod,
		"dropping a container record that cannot be read", victimCtr,
		"dropping unreadable image record", recCfg.Hex,
		"its config blob " + blobCfg.String() + " is missing",
	} {
		if !e.d.Logs.Contains(want) {
			t.Errorf("the logs do not report %q", want)
		}
	}
	// The damaged objects are gone, and what they held with them (the
	// victim pod's pause, IP and netns, the victim container's process).
	pods, _ := e.rt.ListPodSandbox(ctx, nil)
	if len(pods) != 1 || pods[0].Id != keepPod || pods[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pods after start-up: %v", pods)
	}
	ctrs, _ := e.rt.ListContainers(ctx, nil)
	if len(ctrs) != 1 || ctrs[0].Id != keepCtr || ctrs[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("containers after start-up: %v", ctrs)
	}
	for name, ref := range refs {
		if st, err := e.img.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err != nil || st.Image != nil {
			t.Errorf("image with a damaged %s: %+v %v", name, st.GetImage(), err)
		}
	}
	e.checkConsistent(t)
	c := e.counts(t)
	for _, k := range []string{"IP allocations", "veths on the bridge", "netns pins", "snapshot temp dirs", "state temp files"} {
		want := map[string]int{"IP allocations": 1, "veths on the bridge": 1, "netns pins": 1}[k]
		if c[k] != want {
			t.Errorf("%s: %d, want %d (only the kept pod's)", k, c[k], want)
		}
	}

	// The rest works: the kept container execs, a new pod runs, the
	// damaged images pull again.
	if out, _, err := e.rt.ExecSync(ctx, keepCtr, []string{"echo", "alive"}, 0); err != nil || strings.TrimSpace(string(out)) != "alive" {
		t.Errorf("exec in the kept container: %q %v", out, err)
	}
	e.sync(t, "fresh", "app", true)
	for _, ref := range refs {
		if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil); err != nil {
			t.Errorf("pull again: %v", err)
		}
		if err := e.img.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: ref}); err != nil {
			t.Error(err)
		}
	}
	e.checkConsistent(t)
	e.checkNoLeak(t)
}
