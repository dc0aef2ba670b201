// Package workload holds the benchmark's workloads: what is done to a
// runtime through the CRI and which figures it yields. Each workload family
// has its own file; Table lists them all, in report order. Adding one means
// writing a type with Setup/Run/Teardown and a line in Table.
package workload

import (
	"context"
	"slices"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

// Figure is one number the report compares across runtimes. Every figure
// is a cost: lower is better.
type Figure struct {
	ID    string `json:"id"` // stable key in results.json, e.g. "pull.cold"
	Title string `json:"title"`
	Unit  string `json:"unit"` // "ms", "MiB", "KiB", "count"
	// Floor is the ID of the figure of the same workload that is this
	// one's floor (the physical limit under it, measured in the same run):
	// the report divides this figure by it, runtime by runtime.
	Floor string `json:"floor,omitempty"`
}

// Recorder receives samples. It is safe for concurrent use.
type Recorder interface {
	Record(figureID string, value float64)
}

// Workload runs against one runtime. A new instance is made for each round
// and runtime, so it may keep that runtime's state (pod ids) in fields.
type Workload interface {
	// Setup prepares what Run needs and does not measure (pulled images,
	// a pod to exec into).
	Setup(ctx context.Context, t *target.Target) error
	// Run does one round of measured work, recording samples as it goes,
	// so that a failure half-way keeps what was measured.
	Run(ctx context.Context, t *target.Target, rec Recorder) error
	// Teardown removes everything Setup and Run created. It runs even when
	// they failed.
	Teardown(ctx context.Context, t *target.Target) error
}

// Entry is a workload in the table.
type Entry struct {
	Name        string
	Description string
	Figures     []Figure
	// Rounds is how many times the runner alternates between runtimes.
	// Heavy set-ups (hundreds of containers) run once per runtime.
	Rounds func(Config) int
	New    func(Config) Workload
	// Floor, when set, makes this workload the floor of another's figure:
	// it runs whenever that workload is selected too, and the report
	// divides that figure by this one's, runtime by runtime.
	Floor *FloorOf
}

// FloorOf names the figure a floor workload is the floor of, and the
// floor's own figure to divide it by.
type FloorOf struct {
	Workload string `json:"workload"` // "container-lifecycle"
	Figure   string `json:"figure"`   // "ctr.create_start"
	Floor    string `json:"floor"`    // the floor workload's figure
	// Pace is the figure of Workload whose median is the time from one
	// of its creates to the next: the floor's pace under AutoPeriod.
	Pace string `json:"pace"` // "ctr.cycle"
}

// Config sizes the workloads; hack/bench.sh passes the full or the quick
// set through flags.
type Config struct {
	Rounds       int    `json:"rounds"`        // alternations for light workloads
	Samples      int    `json:"samples"`       // samples per small-operation figure, over all rounds
	ColdPulls    int    `json:"cold_pulls"`    // cold pulls per runtime (one per round)
	ParallelPods int    `json:"parallel_pods"` // pods started at once
	MemoryPods   int    `json:"memory_pods"`   // running pods for the memory figures
	MemoryRounds int    `json:"memory_rounds"` // memory measurements per runtime
	PullImage    string `json:"pull_image"`    // the multi-layer image
	LargeImage   string `json:"large_image"`   // the 1 GiB single-layer image
	LayersImage  string `json:"layers_image"`  // the 100-layer image
	LargePulls   int    `json:"large_pulls"`   // cold pulls of each large image per runtime
	// The node-scale workload: BurstPods pods started BurstInFlight at a
	// time, held running BurstHold, listed and running at the daemon's
	// restart.
	BurstPods     int           `json:"burst_pods"`
	BurstInFlight int           `json:"burst_in_flight"`
	BurstHold     time.Duration `json:"burst_hold"`
	Image         string        `json:"image"`         // container image (busybox)
	SandboxImage  string        `json:"sandbox_image"` // pre-pulled so pod starts are warm
	// FloorPeriod is the floor's pace: "auto" (the pace of the workload
	// it is the floor of, runtime by runtime) or a duration between creates.
	FloorPeriod string        `json:"floor_period"`
	FloorPace   time.Duration `json:"-"` // FloorPeriod resolved for one runtime, by the runner
	FloorBin    string        `json:"-"` // cmd/libcontainer-floor, built by hack/bench.sh
	FloorDir    string        `json:"-"` // the floor's libcontainer roots
}

// AutoPeriod is the FloorPeriod that follows the floored workload's pace;
// DefaultPace is its pace when that workload did not run.
const (
	AutoPeriod  = "auto"
	DefaultPace = 30 * time.Millisecond
)

// perRound splits n samples over the rounds, rounding up.
func (c Config) perRound(n int) int {
	r := max(c.Rounds, 1)
	return max((n+r-1)/r, 1)
}

func light(c Config) int { return max(c.Rounds, 1) }
func once(Config) int    { return 1 }

// Table is every workload, in the order they run and are reported. The
// start-up footprint comes first, then pulls, before any pod has started,
// and memory last, so its "idle" figure is of a daemon that has done
// everything else.
func Table() []Entry {
	return []Entry{
		{
			Name:        "start-memory",
			Description: "resident memory of the freshly started runtime",
			Figures:     startMemoryFigures,
			Rounds:      once,
			New:         func(Config) Workload { return startMemory{} },
		},
		{
			Name:        "pull-cold",
			Description: "PullImage of the multi-layer image after RemoveImage (download + unpack)",
			Figures:     coldPullFigures,
			Rounds:      func(c Config) int { return max(c.ColdPulls, 1) },
			New:         func(c Config) Workload { return &coldPull{cfg: c} },
		},
		{
			Name:        "pull-warm",
			Description: "PullImage of the multi-layer image already present (no layer should move)",
			Figures:     rePullFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &rePull{cfg: c} },
		},
		{
			Name:        "pull-large",
			Description: "PullImage of a 1 GiB single-layer gzip image (64 random files of 8 MiB, 16384 text files of 32 KiB) after RemoveImage, beside its floor; then the first container from it",
			Figures:     largePullFigures("pull.large", "1 GiB, one layer"),
			Rounds:      func(c Config) int { return max(c.LargePulls, 1) },
			New:         func(c Config) Workload { return &largePull{cfg: c, ref: c.LargeImage, prefix: "pull.large"} },
		},
		{
			Name:        "pull-layers",
			Description: "PullImage of a 100-layer gzip image (1 MiB per layer) after RemoveImage, beside its floor; then the first container from it",
			Figures:     largePullFigures("pull.layers", "100 layers of 1 MiB"),
			Rounds:      func(c Config) int { return max(c.LargePulls, 1) },
			New:         func(c Config) Workload { return &largePull{cfg: c, ref: c.LayersImage, prefix: "pull.layers"} },
		},
		{
			Name:        "pod-start",
			Description: "RunPodSandbox + CreateContainer + StartContainer (busybox sleep), images present, one pod at a time; then StopPodSandbox + RemovePodSandbox",
			Figures:     podStartFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &podStart{cfg: c} },
		},
		{
			Name:        "pod-start-parallel",
			Description: "the same pod start, N pods at once",
			Figures:     parallelFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &parallelStart{cfg: c} },
		},
		{
			Name:        LifecycleName,
			Description: "CreateContainer, StartContainer, StopContainer, RemoveContainer in a running pod",
			Figures:     lifecycleFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &lifecycle{cfg: c} },
		},
		{
			Name:        FloorName,
			Description: "in-process libcontainer creating and starting a container from the OCI spec the runtime wrote for container-lifecycle's container, at the same pace: the floor under CreateContainer+StartContainer",
			Figures:     floorFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &containerFloor{cfg: c} },
			Floor:       &FloorOf{Workload: LifecycleName, Figure: CreateStartFigure, Floor: FloorFigure, Pace: "ctr.cycle"},
		},
		{
			Name:        "exec-sync",
			Description: "ExecSync /bin/true in a running container (a probe)",
			Figures:     execFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &execSync{cfg: c} },
		},
		{
			Name:        "checkpoint",
			Description: "CheckpointContainer of a running container, then its restore as a new container (CreateContainer from the archive + StartContainer)",
			Figures:     checkpointFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &checkpointRestore{cfg: c} },
		},
		{
			Name:        PolicyName,
			Description: "berthd's image policy: PullImage cold and warm, and CreateContainer, of a signed image its policy verifies, beside the same image from a repository under accept (n/a for a runtime without an image policy)",
			Figures:     policyFigures,
			Rounds:      light,
			New:         func(c Config) Workload { return &imagePolicy{cfg: c} },
		},
		{
			Name:        "node-burst",
			Description: "a node filling up: N pods (kubelet's default maxPods) started M at a time, each running pod probed by ExecSync every 2 s and the node relisted every second, held running a while; then, probes stopped and the machine settled, ListContainers and ListContainerStats timed with the N pods running, and the daemon restarted (SIGTERM, then launched again) with them and its recovery timed from the new daemon's launch (n/a for a runtime without a restart command); then every pod torn down",
			Figures:     slices.Concat(burstFigures, settledFigures, restartFigures),
			Rounds:      once,
			New:         func(c Config) Workload { return &burst{cfg: c} },
		},
		{
			Name:        "memory",
			Description: "resident memory of the runtime's own processes, idle and with many running pods",
			Figures:     memoryFigures,
			Rounds:      func(c Config) int { return max(c.MemoryRounds, 1) },
			New:         func(c Config) Workload { return &memory{cfg: c} },
		},
		{
			Name:        "helper-memory",
			Description: "resident memory of berth's supervisor and of the keeper above it, idle and with N running pods (n/a for a runtime without them)",
			Figures:     helperFigures,
			Rounds:      once,
			New:         func(c Config) Workload { return &memory{cfg: c, helpers: true} },
		},
	}
}

// ms converts a duration to the milliseconds figures are recorded in.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mib and kib convert byte counts; kibToMiB the KiB of /proc.
func mib(b int64) float64      { return float64(b) / (1 << 20) }
func kib(b int64) float64      { return float64(b) / (1 << 10) }
func kibToMiB(k int64) float64 { return float64(k) / (1 << 10) }
