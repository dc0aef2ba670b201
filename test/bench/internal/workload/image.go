package workload

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/procfs"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

var coldPullFigures = []Figure{
	{ID: "pull.cold", Title: "image pull + unpack, cold (multi-layer image)", Unit: "ms"},
	{ID: "pull.cold.read", Title: "  bytes the daemon read during it (rchar: network + disk)", Unit: "MiB"},
	{ID: "pull.cold.disk", Title: "  disk the pull added to the runtime root", Unit: "MiB"},
	{ID: "pull.remove", Title: "  RemoveImage of the multi-layer image (incl. freeing layers)", Unit: "ms"},
}

var rePullFigures = []Figure{
	{ID: "pull.warm", Title: "image re-pull, image present", Unit: "ms"},
	{ID: "pull.warm.read", Title: "  bytes the daemon read during it (rchar)", Unit: "KiB"},
}

// coldPull removes the image, checks what that freed, and times a pull.
// The disk figure is the proof that the pull is cold: were the layers kept
// after RemoveImage, the pull would add (and download) next to nothing.
type coldPull struct{ cfg Config }

func (w *coldPull) Setup(ctx context.Context, t *target.Target) error {
	// The first round pulls the image untimed, so that every round times
	// RemoveImage of a present image and then a pull from nothing.
	return ensureImages(ctx, t, w.cfg.PullImage)
}

func (w *coldPull) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	spec := &runtimeapi.ImageSpec{Image: w.cfg.PullImage}
	t0 := time.Now()
	if err := t.Images.RemoveImage(ctx, spec); err != nil {
		return fmt.Errorf("RemoveImage: %w", err)
	}
	rec.Record("pull.remove", ms(time.Since(t0)))
	before, err := t.DiskUsage()
	if err != nil {
		return fmt.Errorf("disk usage: %w", err)
	}
	d, read, err := timedPull(ctx, t, spec)
	if err != nil {
		return err
	}
	rec.Record("pull.cold", ms(d))
	rec.Record("pull.cold.read", mib(read))
	after, err := t.DiskUsage()
	if err != nil {
		return fmt.Errorf("disk usage: %w", err)
	}
	rec.Record("pull.cold.disk", mib(after-before))
	return nil
}

func (w *coldPull) Teardown(context.Context, *target.Target) error { return nil }

// rePull times pulls of an image the runtime has: resolving the tag and
// finding every layer present, with no layer download.
type rePull struct{ cfg Config }

func (w *rePull) Setup(ctx context.Context, t *target.Target) error {
	return ensureImages(ctx, t, w.cfg.PullImage)
}

func (w *rePull) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	spec := &runtimeapi.ImageSpec{Image: w.cfg.PullImage}
	for range w.cfg.perRound(w.cfg.Samples) {
		d, read, err := timedPull(ctx, t, spec)
		if err != nil {
			return err
		}
		rec.Record("pull.warm", ms(d))
		rec.Record("pull.warm.read", kib(read))
	}
	return nil
}

// Teardown keeps the image: the next round would only pull it again, and
// no later figure depends on it (the work dir goes at the end).
func (w *rePull) Teardown(context.Context, *target.Target) error { return nil }

// timedPull pulls spec and returns how long it took and how many bytes
// the daemon read meanwhile.
func timedPull(ctx context.Context, t *target.Target, spec *runtimeapi.ImageSpec) (time.Duration, int64, error) {
	before, err := procfs.Read(t.DaemonPID)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if _, err := t.Images.PullImage(ctx, spec, nil, nil); err != nil {
		return 0, 0, fmt.Errorf("PullImage %s: %w", spec.Image, err)
	}
	d := time.Since(t0)
	after, err := procfs.Read(t.DaemonPID)
	if err != nil {
		return 0, 0, err
	}
	return d, after.ReadBytes - before.ReadBytes, nil
}
