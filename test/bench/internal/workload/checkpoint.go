package workload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

var checkpointFigures = []Figure{
	{ID: "ckpt.checkpoint", Title: "CheckpointContainer of a running busybox sleep (left running), archive written", Unit: "ms"},
	{ID: "ckpt.restore", Title: "restore: CreateContainer from the archive + StartContainer", Unit: "ms"},
}

// checkpointRestore times CheckpointContainer of a small running container
// and its restore as a new container of the same pod (then removed). A
// runtime without CheckpointContainer (containerd 1.6) is reported as
// skipped.
type checkpointRestore struct {
	cfg Config
	pod *pod
	ctr string
	dir string
	n   int
}

// checkpointTimeout bounds one CheckpointContainer of a busybox sleep,
// which takes berth about a second here. containerd 2.3 never answered
// one in this benchmark (its CRI's 3-minute call deadline ran out, three
// minutes of make bench); one that takes 30 s, thirty times berth's on a
// slow day, has failed.
const checkpointTimeout = 30 * time.Second

func (w *checkpointRestore) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	var err error
	if w.dir, err = os.MkdirTemp("", "berth-bench-ckpt-"); err != nil {
		return err
	}
	p, err := runPod(ctx, t, "ckpt")
	if err != nil {
		return err
	}
	w.pod = p
	// A pid namespace of its own, as kubelet gives every container of an
	// ordinary pod: its restore into the same pod, beside the original,
	// then needs no pid the original holds (CRIU restores the same pids).
	ccfg := newContainerConfig("c0", w.cfg.Image, sleepCmd)
	ccfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
	}
	if w.ctr, err = t.Runtime.CreateContainer(ctx, p.id, ccfg, p.config); err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	return t.Runtime.StartContainer(ctx, w.ctr)
}

func (w *checkpointRestore) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	for range w.cfg.perRound(max(w.cfg.Samples/10, 1)) {
		w.n++
		location := filepath.Join(w.dir, fmt.Sprintf("c%d.tar", w.n))
		cctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
		t0 := time.Now()
		err := t.Runtime.CheckpointContainer(cctx, &runtimeapi.CheckpointContainerRequest{ContainerId: w.ctr, Location: location})
		cancel()
		if err != nil {
			return fmt.Errorf("CheckpointContainer: %w", err)
		}
		rec.Record("ckpt.checkpoint", ms(time.Since(t0)))
		cfg := &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("restored%d", w.n)},
			Image:    &runtimeapi.ImageSpec{Image: location},
			LogPath:  fmt.Sprintf("restored%d.log", w.n),
		}
		t1 := time.Now()
		id, err := t.Runtime.CreateContainer(ctx, w.pod.id, cfg, w.pod.config)
		if err == nil {
			err = t.Runtime.StartContainer(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		rec.Record("ckpt.restore", ms(time.Since(t1)))
		t.Runtime.StopContainer(ctx, id, 0)
		t.Runtime.RemoveContainer(ctx, id)
		os.Remove(location)
	}
	return nil
}

func (w *checkpointRestore) Teardown(ctx context.Context, t *target.Target) error {
	os.RemoveAll(w.dir)
	return removePods(ctx, t, []*pod{w.pod})
}
