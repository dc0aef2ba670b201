package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/report"
	"github.com/berth-cri/berth/test/bench/internal/runner"
	"github.com/berth-cri/berth/test/bench/internal/target"
	"github.com/berth-cri/berth/test/bench/internal/workload"
)

// full is the configuration of make bench; quick the one of BENCH_QUICK=1,
// for iterating on the benchmark itself (a few minutes less, noisier).
var (
	full = workload.Config{
		Rounds: 3, Samples: 30, ColdPulls: 5, ParallelPods: 10,
		MemoryPods: 50, MemoryRounds: 1,
		LargePulls: 1, BurstPods: 110, BurstInFlight: 10, BurstHold: 10 * time.Second,
	}
	quick = workload.Config{
		Rounds: 2, Samples: 10, ColdPulls: 2, ParallelPods: 5,
		MemoryPods: 10, MemoryRounds: 1,
		LargePulls: 1, BurstPods: 30, BurstInFlight: 5, BurstHold: 4 * time.Second,
	}
)

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	targets := fs.String("targets", "", "targets.json written by hack/bench.sh (required)")
	out := fs.String("out", "bench/results.json", "results file; results.md is written beside it")
	isQuick := fs.Bool("quick", false, "the quick configuration (flags below still override it)")
	only := fs.String("only", "", "run only the workloads whose name matches this regexp")
	var c workload.Config
	fs.IntVar(&c.Rounds, "rounds", full.Rounds, "alternation rounds of the light workloads")
	fs.IntVar(&c.Samples, "samples", full.Samples, "samples per small-operation figure, over all rounds")
	fs.IntVar(&c.ColdPulls, "cold-pulls", full.ColdPulls, "cold pulls per runtime")
	fs.IntVar(&c.ParallelPods, "parallel-pods", full.ParallelPods, "pods started at once")
	fs.IntVar(&c.MemoryPods, "memory-pods", full.MemoryPods, "running pods for the memory figures")
	fs.IntVar(&c.MemoryRounds, "memory-rounds", full.MemoryRounds, "memory measurements per runtime")
	fs.IntVar(&c.LargePulls, "large-pulls", full.LargePulls, "cold pulls of each large image per runtime")
	fs.IntVar(&c.BurstPods, "burst-pods", full.BurstPods, "pods of node-burst")
	fs.IntVar(&c.BurstInFlight, "burst-in-flight", full.BurstInFlight, "pods started (and removed) at once by node-burst")
	fs.DurationVar(&c.BurstHold, "burst-hold", full.BurstHold, "how long node-burst keeps its pods running, probed, after the last start (then it restarts the daemon)")
	fs.StringVar(&c.PullImage, "pull-image", defaultPullImage, "the multi-layer image")
	fs.StringVar(&c.LargeImage, "large-image", defaultLargeImage, "the 1 GiB single-layer image")
	fs.StringVar(&c.LayersImage, "layers-image", defaultLayersImage, "the 100-layer image")
	fs.StringVar(&c.Image, "image", "127.0.0.1:5000/e2e-test-images/busybox:1.29-2", "container image")
	fs.StringVar(&c.SandboxImage, "sandbox-image", "registry.k8s.io/pause:3.10", "the runtimes' sandbox image, pulled before pod figures")
	fs.StringVar(&c.FloorBin, "floor", "", "the libcontainer-floor program (hack/bench.sh builds it); without it container-floor fails")
	fs.StringVar(&c.FloorDir, "floor-dir", filepath.Join(os.TempDir(), "berth-bench-floor"), "the floor's libcontainer roots (emptied)")
	fs.StringVar(&c.FloorPeriod, "floor-period", workload.AutoPeriod, "the floor's pace: a duration from one create to the next (0: back to back), or auto: the runtime's container-lifecycle cycle in this run ("+workload.DefaultPace.String()+" if it did not run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *targets == "" {
		return fmt.Errorf("-targets is required")
	}
	if c.FloorPeriod != workload.AutoPeriod {
		if d, err := time.ParseDuration(c.FloorPeriod); err != nil || d < 0 {
			return fmt.Errorf("-floor-period %q: want auto or a duration", c.FloorPeriod)
		}
	}
	mode := "full"
	if *isQuick {
		mode = "quick"
		c = withPreset(fs, c, quick)
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			return err
		}
	}
	specs, err := target.LoadSpecs(*targets)
	if err != nil {
		return err
	}

	ctx = target.QuietContext(ctx)
	start := time.Now()
	res := &report.Results{Date: start, Mode: mode, Config: c, Machine: report.Describe()}
	var ts []*target.Target
	for _, s := range specs {
		t, err := target.Connect(ctx, s)
		if err != nil {
			return err
		}
		defer t.Close(ctx)
		ts = append(ts, t)
		res.Runtimes = append(res.Runtimes, describe(ctx, t))
	}

	r := &runner.Runner{Config: c, Targets: ts, Only: re, Log: os.Stderr}
	load := report.WatchLoad(ctx, 5*time.Second)
	res.Workloads = r.Run(ctx, workload.Table())
	res.Duration = time.Since(start).Round(time.Second).String()
	res.Machine.LoadEnd = report.LoadAverage()
	res.Machine.Load1Mean, res.Machine.Load1Max = load()
	res.Finish()
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := res.WriteJSON(*out); err != nil {
		return err
	}
	if err := res.WriteMarkdown(mdPath(*out)); err != nil {
		return err
	}
	// Interrupted: the results so far are written, but make bench must fail.
	return ctx.Err()
}

// withPreset replaces every flag the user did not set by the preset's value.
func withPreset(fs *flag.FlagSet, c, preset workload.Config) workload.Config {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(name string, v *int, p int) {
		if !set[name] {
			*v = p
		}
	}
	pick("rounds", &c.Rounds, preset.Rounds)
	pick("samples", &c.Samples, preset.Samples)
	pick("cold-pulls", &c.ColdPulls, preset.ColdPulls)
	pick("parallel-pods", &c.ParallelPods, preset.ParallelPods)
	pick("memory-pods", &c.MemoryPods, preset.MemoryPods)
	pick("memory-rounds", &c.MemoryRounds, preset.MemoryRounds)
	pick("large-pulls", &c.LargePulls, preset.LargePulls)
	pick("burst-pods", &c.BurstPods, preset.BurstPods)
	pick("burst-in-flight", &c.BurstInFlight, preset.BurstInFlight)
	if !set["burst-hold"] {
		c.BurstHold = preset.BurstHold
	}
	return c
}

// describe identifies a runtime from its own Version answer and its
// version commands.
func describe(ctx context.Context, t *target.Target) report.Runtime {
	rt := report.Runtime{Name: t.Name, Endpoint: t.Endpoint}
	if t.Unavailable != "" {
		rt.Unavailable = t.Unavailable
		return rt
	}
	if v, err := t.Runtime.Version(ctx, "v1"); err == nil {
		rt.CRI = fmt.Sprintf("%s %s (CRI %s)", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	} else {
		rt.CRI = "Version failed: " + err.Error()
	}
	for _, argv := range t.Versions {
		rt.Versions = append(rt.Versions, report.CommandOutput(argv))
	}
	return rt
}

func mdPath(jsonPath string) string {
	return strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath)) + ".md"
}
