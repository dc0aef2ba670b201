package workload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/procfs"
	"github.com/berth-cri/berth/test/bench/internal/pullfloor"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

var coldPullFigures = []Figure{
	{ID: "pull.cold", Title: "image pull + unpack, cold (multi-layer image)", Unit: "ms", Floor: "pull.cold.floor"},
	{ID: "pull.cold.floor", Title: "  floor: the blobs read from the registry, decompressed on one core, files written", Unit: "ms"},
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
	if err := pullFloor(ctx, w.cfg, spec.Image, rec, "pull.cold.floor"); err != nil {
		return err
	}
	return coldPullOf(ctx, t, spec, rec, "pull.cold")
}

// coldPullOf times a pull of an absent image and records, under prefix,
// its time (prefix), the bytes the daemon read (.read) and the disk it
// added to the runtime's root (.disk, n/a without a root dir).
func coldPullOf(ctx context.Context, t *target.Target, spec *runtimeapi.ImageSpec, rec Recorder, prefix string) error {
	disk := func() (int64, error) {
		if t.RootDir == "" {
			return 0, nil
		}
		n, err := t.DiskUsage()
		if err != nil {
			return 0, fmt.Errorf("disk usage: %w", err)
		}
		return n, nil
	}
	before, err := disk()
	if err != nil {
		return err
	}
	quietDisk()
	d, read, err := timedPull(ctx, t, spec)
	if err != nil {
		return err
	}
	rec.Record(prefix, ms(d))
	rec.Record(prefix+".read", mib(read))
	after, err := disk()
	if err != nil {
		return err
	}
	if t.RootDir != "" {
		rec.Record(prefix+".disk", mib(after-before))
	}
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

// largePullFigures are the figures of a cold pull of one of the large
// images (prefix "pull.large" or "pull.layers"), its floor and the first
// container started from it.
func largePullFigures(prefix, what string) []Figure {
	return []Figure{
		{ID: prefix + ".cold", Title: "image pull + unpack, cold (" + what + ")", Unit: "ms", Floor: prefix + ".floor"},
		{ID: prefix + ".floor", Title: "  floor: the blobs read from the registry, decompressed on one core, files written", Unit: "ms"},
		{ID: prefix + ".cold.read", Title: "  bytes the daemon read during the pull (rchar)", Unit: "MiB"},
		{ID: prefix + ".cold.disk", Title: "  disk the pull added to the runtime root", Unit: "MiB"},
		{ID: prefix + ".first_start", Title: "first container from the image: CreateContainer + StartContainer in a running pod", Unit: "ms"},
	}
}

// largePull is a cold pull of a large image (absent at the start of each
// round, removed at its end), the pull floor on the same image just
// before it, and the first container started from it (the image's own
// entrypoint, multilayer.PausePath) in a pod started for it untimed.
type largePull struct {
	cfg    Config
	ref    string
	prefix string
	pod    *pod
}

func (w *largePull) Setup(ctx context.Context, t *target.Target) error {
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	return removeImageIfPresent(ctx, t, w.ref)
}

func (w *largePull) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	if err := pullFloor(ctx, w.cfg, w.ref, rec, w.prefix+".floor"); err != nil {
		return err
	}

	if err := coldPullOf(ctx, t, &runtimeapi.ImageSpec{Image: w.ref}, rec, w.prefix+".cold"); err != nil {
		return err
	}

	p, err := runPod(ctx, t, "large")
	if err != nil {
		return err
	}
	w.pod = p
	_, st, err := startContainer(ctx, t, w.pod, "first", w.ref, nil)
	if err != nil {
		return err
	}
	rec.Record(w.prefix+".first_start", ms(st.create+st.start))
	return nil
}

// Teardown removes the pod and the image: a gigabyte per runtime must not
// stay for the rest of the run.
func (w *largePull) Teardown(ctx context.Context, t *target.Target) error {
	err := removePods(ctx, t, []*pod{w.pod})
	return errors.Join(err, removeImageIfPresent(ctx, t, w.ref))
}

// pullFloor times pullfloor.Pull of ref into a new directory of the
// floor dir (on the runtimes' filesystem), removed after, untimed.
func pullFloor(ctx context.Context, cfg Config, ref string, rec Recorder, id string) error {
	dir := filepath.Join(cfg.FloorDir, "pull-"+randomID())
	defer os.RemoveAll(dir)
	quietDisk()
	t0 := time.Now()
	if _, err := pullfloor.Pull(ctx, ref, dir); err != nil {
		return fmt.Errorf("pull floor: %w", err)
	}
	rec.Record(id, ms(time.Since(t0)))
	return nil
}

// quietDisk writes back every dirty page of the machine, untimed, before a
// timed pull or pull floor: the gigabyte the previous round, the floor or
// another runtime left in the page cache would otherwise be written while
// the next one runs, and slow it by seconds or not depending on when the
// kernel gets to it (the same floor measured 5.9, 12.3 and 16.3 s in one
// run). Each pull then pays for writing its own files only.
func quietDisk() { unix.Sync() }

// removeImageIfPresent removes ref if the runtime has it.
func removeImageIfPresent(ctx context.Context, t *target.Target, ref string) error {
	spec := &runtimeapi.ImageSpec{Image: ref}
	st, err := t.Images.ImageStatus(ctx, spec, false)
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", ref, err)
	}
	if st.GetImage() == nil {
		return nil
	}
	if err := t.Images.RemoveImage(ctx, spec); err != nil {
		return fmt.Errorf("RemoveImage %s: %w", ref, err)
	}
	return nil
}
