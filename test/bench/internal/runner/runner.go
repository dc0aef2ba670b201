// Package runner drives the workloads over the runtimes: round after
// round, each runtime in turn, so that a slow phase of the machine (a
// neighbour's build, page cache state) falls on both rather than on one.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/test/bench/internal/report"
	"github.com/berth-cri/berth/test/bench/internal/stats"
	"github.com/berth-cri/berth/test/bench/internal/target"
	"github.com/berth-cri/berth/test/bench/internal/workload"
)

// Runner runs a table of workloads against connected targets.
type Runner struct {
	Config  workload.Config
	Targets []*target.Target
	// Only, when set, selects the workloads whose name it matches, and the
	// floors of those.
	Only *regexp.Regexp
	Log  io.Writer

	done []report.WorkloadResult // the results so far, for a floor's pace
}

// Run runs every selected workload and returns the results. A workload that
// fails for one runtime is reported as such and the run goes on: one
// missing RPC must not cost the whole report.
func (r *Runner) Run(ctx context.Context, entries []workload.Entry) []report.WorkloadResult {
	var out []report.WorkloadResult
	for _, e := range entries {
		if !r.selected(e) {
			continue
		}
		if ctx.Err() != nil {
			r.logf("interrupted: %s and later workloads not run", e.Name)
			break
		}
		res := r.runEntry(ctx, e)
		r.done = append(r.done, res)
		out = append(out, res)
	}
	return out
}

// pace resolves the floor's period for one runtime: under AutoPeriod, the
// median of the floored workload's pace figure for that runtime, measured
// earlier in this run, else DefaultPace.
func (r *Runner) pace(e workload.Entry, runtime string) time.Duration {
	if r.Config.FloorPeriod != workload.AutoPeriod {
		d, _ := time.ParseDuration(r.Config.FloorPeriod) // validated by the caller
		return d
	}
	for _, wl := range r.done {
		if wl.Name != e.Floor.Workload {
			continue
		}
		for _, f := range wl.Figures {
			if f.ID != e.Floor.Pace {
				continue
			}
			for _, o := range f.Outcomes {
				if o.Runtime == runtime && o.Summary != nil && o.Summary.Median > 0 {
					return time.Duration(o.Summary.Median * float64(time.Millisecond))
				}
			}
		}
	}
	return workload.DefaultPace
}

// selected is true when Only matches the workload, or the one it is the
// floor of: a floor without its workload has nothing to compare.
func (r *Runner) selected(e workload.Entry) bool {
	if r.Only == nil || r.Only.MatchString(e.Name) {
		return true
	}
	return e.Floor != nil && r.Only.MatchString(e.Floor.Workload)
}

// cleanupTimeout bounds a workload's teardown, which runs even after an
// interrupt: the pods must go, or CNI state and shims are left behind.
const cleanupTimeout = 5 * time.Minute

// recorder collects one runtime's samples of one workload.
type recorder struct {
	mu      sync.Mutex // guards samples: parallel workloads record concurrently
	samples map[string][]float64
}

func (c *recorder) Record(id string, v float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples[id] = append(c.samples[id], v)
}

func (r *Runner) runEntry(ctx context.Context, e workload.Entry) report.WorkloadResult {
	rounds := e.Rounds(r.Config)
	recs := make([]*recorder, len(r.Targets))
	errs := make([]error, len(r.Targets))
	for i := range recs {
		recs[i] = &recorder{samples: map[string][]float64{}}
	}
	seconds := map[string]float64{}
	for round := 1; round <= rounds; round++ {
		for i, t := range r.Targets {
			if t.Unavailable != "" {
				errs[i] = errUnavailable
				continue
			}
			if errs[i] != nil || ctx.Err() != nil {
				continue // it failed in an earlier round: do not retry each round
			}
			cfg := r.Config
			if e.Floor != nil {
				cfg.FloorPace = r.pace(e, t.Name)
			}
			t0 := time.Now()
			errs[i] = r.once(ctx, e, cfg, t, recs[i])
			took := time.Since(t0).Seconds()
			seconds[t.Name] += took
			r.logf("%-20s round %d/%d %-10s %6.1fs %s", e.Name, round, rounds, t.Name, took, brief(errs[i]))
		}
	}
	res := report.WorkloadResult{Name: e.Name, Description: e.Description, Rounds: rounds, FloorOf: e.Floor, Seconds: seconds}
	for _, f := range e.Figures {
		fr := report.FigureResult{Figure: f}
		for i, t := range r.Targets {
			o := outcome(t.Name, recs[i].samples[f.ID], errs[i])
			if t.Unavailable != "" {
				o.Note = t.Unavailable
			}
			fr.Outcomes = append(fr.Outcomes, o)
		}
		res.Figures = append(res.Figures, fr)
	}
	return res
}

// once runs one round of e on t: Setup, Run, and always Teardown and a
// sweep of leftover pods.
func (r *Runner) once(ctx context.Context, e workload.Entry, cfg workload.Config, t *target.Target, rec workload.Recorder) error {
	w := e.New(cfg)
	err := w.Setup(ctx, t)
	if err != nil {
		err = fmt.Errorf("setup: %w", err)
	} else if err = w.Run(ctx, t, rec); err != nil {
		err = fmt.Errorf("run: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if terr := w.Teardown(cctx, t); terr != nil && !unimplemented(terr) {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	if serr := workload.Sweep(cctx, t); serr != nil && !unimplemented(serr) {
		err = errors.Join(err, fmt.Errorf("sweep: %w", serr))
	}
	return err
}

// outcome turns samples and the error that ended the rounds into a figure's
// outcome for one runtime.
func outcome(name string, samples []float64, err error) report.Outcome {
	o := report.Outcome{Runtime: name, Samples: samples}
	if len(samples) > 0 {
		s := stats.Summarize(samples)
		o.Summary = &s
	}
	switch {
	case errors.Is(err, errUnavailable):
		o.Status = report.StatusUnavailable
	case errors.Is(err, workload.ErrNotApplicable) && len(samples) == 0:
		o.Status, o.Note = report.StatusNA, brief(err)
	case err == nil && len(samples) > 0:
		o.Status = report.StatusOK
	case err == nil:
		o.Status, o.Note = report.StatusFailed, "no samples recorded"
	case unimplemented(err) && len(samples) == 0:
		o.Status, o.Note = report.StatusSkipped, fmt.Sprintf("not supported by %s yet (%s)", name, brief(err))
	case unimplemented(err):
		// Measured before the workload reached an RPC the runtime lacks
		// (the idle memory before the first pod): complete as it is.
		o.Status = report.StatusOK
	case len(samples) > 0:
		o.Status, o.Note = report.StatusPartial, "stopped early: "+brief(err)
	default:
		o.Status, o.Note = report.StatusFailed, brief(err)
	}
	return o
}

// errUnavailable marks a runtime that could not be built or started: no
// workload runs against it, every figure says so.
var errUnavailable = errors.New("unavailable")

// unimplemented is true when err carries the gRPC code Unimplemented: the
// runtime lacks an RPC, which the report shows as skipped, not failed.
// status.Code finds a status wrapped with %w or errors.Join.
func unimplemented(err error) bool {
	return status.Code(err) == codes.Unimplemented
}

// brief is err on one line, without gRPC's verbose prefix.
func brief(err error) string {
	if err == nil {
		return "ok"
	}
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	s = strings.ReplaceAll(s, "rpc error: code = ", "")
	s = strings.ReplaceAll(s, " desc = ", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, "bench: "+format+"\n", args...)
	}
}
