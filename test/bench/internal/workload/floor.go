package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/floor"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

// FloorName is the floor workload, FloorFigure its create+start, which the
// report divides container-lifecycle's CreateContainer+StartContainer by.
// FloorInterval is the pace the floor kept.
const (
	FloorName     = "container-floor"
	FloorFigure   = "floor.create_start"
	FloorInterval = "floor.interval"
)

var floorFigures = []Figure{
	{ID: FloorFigure, Title: "in-process libcontainer create+start, the runtime's spec", Unit: "ms"},
	{ID: "floor.create", Title: "  libcontainer Create + Start (init waiting on its exec fifo)", Unit: "ms"},
	{ID: "floor.start", Title: "  libcontainer Exec", Unit: "ms"},
	{ID: FloorInterval, Title: "pace kept: from one create to the next (not a cost)", Unit: "ms"},
}

// ErrNotApplicable ends a workload that has no meaning for a runtime (the
// floor of one whose OCI spec is not known); the report shows n/a.
var ErrNotApplicable = errors.New("not applicable")

// floorTimeout bounds one run of the floor program; a create takes tens
// of milliseconds.
const floorTimeout = 2 * time.Minute

// containerFloor measures the floor under container-lifecycle's
// CreateContainer+StartContainer: cmd/libcontainer-floor creating and
// starting containers in-process from the very spec the runtime wrote for
// the lifecycle's container, in a pod of its own that stays up (the spec
// joins its namespaces), at the lifecycle's pace. The first create of the
// program is a warm-up, as the supervisor, long running, has done many.
type containerFloor struct {
	cfg  Config
	pod  *pod
	spec string // the reference container's config.json
}

func (w *containerFloor) Setup(ctx context.Context, t *target.Target) error {
	if t.SpecPath == "" {
		return fmt.Errorf("%w: no spec_path for %s in targets.json", ErrNotApplicable, t.Name)
	}
	if w.cfg.FloorBin == "" {
		return errors.New("no floor program (berth-bench run -floor)")
	}
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	p, err := runPod(ctx, t, "floor")
	if err != nil {
		return err
	}
	w.pod = p
	// The lifecycle's container, made the same way.
	ctr, _, err := startContainer(ctx, t, w.pod, "floor-ref", w.cfg.SandboxImage, nil)
	if err != nil {
		return err
	}
	w.spec = strings.ReplaceAll(t.SpecPath, "{id}", ctr)
	if _, err := os.Stat(w.spec); err != nil {
		return fmt.Errorf("the container's OCI spec: %w", err)
	}
	return nil
}

func (w *containerFloor) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	ctx, cancel := context.WithTimeout(ctx, floorTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.cfg.FloorBin,
		"-spec", w.spec,
		"-root", w.rootDir(t),
		"-n", strconv.Itoa(w.cfg.perRound(w.cfg.Samples)),
		"-period", w.cfg.FloorPace.String())
	// Interrupted, it kills its container and cleans up; killed only if
	// it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res floor.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil && runErr == nil {
		return fmt.Errorf("floor output: %w", err)
	}
	for i := range min(len(res.Create), len(res.Start)) {
		rec.Record("floor.create", res.Create[i])
		rec.Record("floor.start", res.Start[i])
		rec.Record(FloorFigure, res.Create[i]+res.Start[i])
	}
	for _, v := range res.Interval {
		rec.Record(FloorInterval, v)
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(w.cfg.FloorBin), runErr, floorError(res, stderr.String()))
	}
	return nil
}

func (w *containerFloor) Teardown(ctx context.Context, t *target.Target) error {
	var errs []error
	if w.spec != "" {
		// The program removes both itself unless it was killed.
		errs = append(errs, floor.Sweep(), os.RemoveAll(w.rootDir(t)))
	}
	if w.pod != nil {
		errs = append(errs, removePods(ctx, t, []*pod{w.pod}))
	}
	return errors.Join(errs...)
}

func (w *containerFloor) rootDir(t *target.Target) string {
	if t.FloorDir != "" {
		return t.FloorDir
	}
	return filepath.Join(w.cfg.FloorDir, t.Name)
}

// floorError is why the floor program failed: its own account, else its
// last line on stderr.
func floorError(res floor.Result, stderr string) string {
	if res.Error != "" {
		return res.Error
	}
	var last string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "libcontainer-floor: ") {
			return strings.TrimPrefix(l, "libcontainer-floor: ")
		}
		if strings.TrimSpace(l) != "" {
			last = l
		}
	}
	return last
}
