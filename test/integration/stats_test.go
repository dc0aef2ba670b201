package integration

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// TestStatsMove: a container burning CPU and holding memory shows it in
// ListContainerStats and ListPodSandboxStats, and its writable layer is on
// the filesystem ImageFsInfo reports.
func TestStatsMove(t *testing.T) {
	e := newPodEnv(t, "stats")
	ctx := context.Background()
	id := e.run(t, e.containerConfig("burner", "sh", "-c",
		"dd if=/dev/zero of=/tmp/fill bs=1M count=8 2>/dev/null; x=$(head -c 33554432 /dev/zero | tr '\\0' a); while :; do :; done"))
	var cs *runtimeapi.ContainerStats
	harness.WaitFor(t, "CPU, memory and the writable layer in the stats", 30*time.Second, func() bool {
		list, err := e.rt.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{Id: id})
		if err != nil || len(list) != 1 {
			return false
		}
		cs = list[0]
		// The writable layer's usage is cached up to 10 s: poll until a
		// measurement after dd's 8 MiB shows.
		return cs.Cpu.GetUsageNanoCores().GetValue() > 100_000_000 && cs.Memory.GetWorkingSetBytes().GetValue() > 16<<20 &&
			cs.WritableLayer.GetUsedBytes().GetValue() >= 8<<20
	})
	if cs.Attributes.GetId() != id || cs.Attributes.GetMetadata().GetName() != "burner" {
		t.Errorf("attributes %+v", cs.Attributes)
	}
	fs, err := e.img.ImageFsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wl := cs.WritableLayer; wl.GetFsId().GetMountpoint() != fs.ImageFilesystems[0].FsId.GetMountpoint() {
		t.Errorf("writable layer %+v, image fs %+v", wl, fs.ImageFilesystems[0].FsId)
	}
	pods, err := e.rt.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{Id: e.pod})
	if err != nil || len(pods) != 1 {
		t.Fatalf("pod stats: %v %v", pods, err)
	}
	if p := pods[0]; len(p.Linux.GetContainers()) != 1 || p.Linux.GetNetwork().GetDefaultInterface().GetName() != "eth0" {
		t.Errorf("pod stats %+v", p.Linux)
	}
}

// TestContainerEvents: a subscriber sees CREATED, STARTED, STOPPED and
// DELETED, each with the pod's status.
func TestContainerEvents(t *testing.T) {
	e := newPodEnv(t, "events")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan *runtimeapi.ContainerEventResponse, 100)
	connected := make(chan struct{})
	go e.rt.GetContainerEvents(ctx, ch, func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(connected) })
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("event stream not established")
	}
	id := e.run(t, e.containerConfig("brief", "true"))
	e.waitExit(t, id)
	if err := e.rt.RemoveContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	for _, w := range want {
		select {
		case ev := <-ch:
			if ev.ContainerId != id || ev.ContainerEventType != w || ev.PodSandboxStatus.GetId() != e.pod || len(ev.ContainersStatuses) == 0 {
				t.Errorf("event %v for %s, want %v for %s (pod %q, %d statuses)", ev.ContainerEventType, ev.ContainerId, w, id, ev.PodSandboxStatus.GetId(), len(ev.ContainersStatuses))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %v event", w)
		}
	}
}
