// Package report holds the benchmark's results (results.json) and renders
// them for people (results.md). Figures are reported, never asserted.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/stats"
	"github.com/berth-cri/berth/test/bench/internal/workload"
)

// Outcome statuses of a figure for one runtime.
const (
	StatusOK      = "ok"
	StatusPartial = "partial" // some samples, then an error (see Note)
	StatusSkipped = "skipped" // the runtime answers Unimplemented
	StatusFailed  = "failed"
	StatusNA      = "n/a" // the workload has no meaning for the runtime (see Note)
	// StatusUnavailable: the runtime could not be built or started (see
	// Note); its column says so in every table.
	StatusUnavailable = "unavailable"
)

// Results is the whole of one run.
type Results struct {
	Date    time.Time       `json:"date"`
	Mode    string          `json:"mode"` // "full" or "quick"
	Config  workload.Config `json:"config"`
	Machine Machine         `json:"machine"`
	// Runtimes are in target order; ratios are the first (berth) over the
	// best of the others (its peers), figure by figure.
	Runtimes  []Runtime        `json:"runtimes"`
	Workloads []WorkloadResult `json:"workloads"`
	Critest   []Critest        `json:"critest,omitempty"`
	Duration  string           `json:"duration"`
}

// Runtime identifies one runtime under benchmark.
type Runtime struct {
	Name     string   `json:"name"`
	Endpoint string   `json:"endpoint"`
	CRI      string   `json:"cri_version"` // runtime_name runtime_version from Version
	Versions []string `json:"versions"`    // outputs of the spec's version commands
	// Unavailable says why the runtime could not be built or started.
	Unavailable string `json:"unavailable,omitempty"`
}

// WorkloadResult is one workload's figures.
type WorkloadResult struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Rounds      int            `json:"rounds"`
	Figures     []FigureResult `json:"figures"`
	// FloorOf is set on a floor workload: FloorRatios divide the figure
	// it names by the floor's, runtime by runtime.
	FloorOf     *workload.FloorOf `json:"floor_of,omitempty"`
	FloorRatios []FloorRatio      `json:"floor_ratios,omitempty"`
	// Seconds is the wall time the workload took each runtime, every
	// round with its setup and teardown: where make bench's time goes.
	Seconds map[string]float64 `json:"seconds,omitempty"`
}

// FloorRatio is how far a runtime's figure is above its floor: the
// figure's median over the floor's, and so for the p95.
type FloorRatio struct {
	Runtime string  `json:"runtime"`
	Median  float64 `json:"median"`
	P95     float64 `json:"p95"`
}

// FigureResult is one figure for every runtime.
type FigureResult struct {
	workload.Figure
	Outcomes []Outcome `json:"outcomes"` // in Runtimes order
	// Ratio is the first runtime over its best peer: the other runtime
	// with the lowest median, when both have samples.
	Ratio *Ratio `json:"ratio,omitempty"`
	// FloorRatios divide the figure by its floor (Figure.Floor, a figure
	// of the same workload), runtime by runtime.
	FloorRatios []FloorRatio `json:"floor_ratios,omitempty"`
}

// Ratio compares two runtimes' summaries.
type Ratio struct {
	Of     string  `json:"of"`   // "berth/containerd-2.3"
	Peer   string  `json:"peer"` // the best peer: "containerd-2.3"
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
}

// Outcome is a figure for one runtime.
type Outcome struct {
	Runtime string         `json:"runtime"`
	Status  string         `json:"status"`
	Note    string         `json:"note,omitempty"`
	Summary *stats.Summary `json:"summary,omitempty"`
	Samples []float64      `json:"samples,omitempty"`
}

// Critest is critest -benchmark's view of one runtime.
type Critest struct {
	Runtime string `json:"runtime"`
	Status  string `json:"status"`  // how the run ended (exit status, time)
	Summary string `json:"summary"` // "critest: N passed, N failed, N skipped"
	Table   string `json:"table"`   // benchsummary's output
}

// Finish computes the ratio of every figure from its outcomes' summaries,
// its ratios to its floor, and those of every floor workload.
func (r *Results) Finish() {
	r.floorRatios()
	for wi := range r.Workloads {
		wl := &r.Workloads[wi]
		floors := map[string]bool{}
		for _, f := range wl.Figures {
			if f.Floor != "" {
				floors[f.Floor] = true
			}
		}
		for fi := range wl.Figures {
			f := &wl.Figures[fi]
			f.Ratio = nil
			// A floor's runtimes differ only by the container or network
			// it runs in: no peer to compare with.
			if !floors[f.ID] {
				f.Ratio = bestPeerRatio(f.Outcomes)
			}
			f.FloorRatios = nil
			if f.Floor == "" {
				continue
			}
			floor := r.figure(wl.Name, f.Floor)
			if floor == nil {
				continue
			}
			for _, o := range f.Outcomes {
				if fo := outcomeOf(floor, o.Runtime); fo != nil {
					if fr, ok := divide(o.Summary, fo.Summary); ok {
						f.FloorRatios = append(f.FloorRatios, FloorRatio{Runtime: o.Runtime, Median: fr.Median, P95: fr.P95})
					}
				}
			}
		}
	}
}

// bestPeerRatio is the first outcome over the best of the others: the
// one with the lowest positive median. Nil without two measured outcomes.
func bestPeerRatio(outcomes []Outcome) *Ratio {
	if len(outcomes) < 2 || outcomes[0].Summary == nil {
		return nil
	}
	var best *Outcome
	for i := 1; i < len(outcomes); i++ {
		o := &outcomes[i]
		if o.Summary == nil || o.Summary.Median <= 0 {
			continue
		}
		if best == nil || o.Summary.Median < best.Summary.Median {
			best = o
		}
	}
	if best == nil {
		return nil
	}
	ratio, ok := divide(outcomes[0].Summary, best.Summary)
	if !ok {
		return nil
	}
	ratio.Of = outcomes[0].Runtime + "/" + best.Runtime
	ratio.Peer = best.Runtime
	return &ratio
}

// divide is a over b, quantile by quantile. A ratio of costs means
// something only when both are positive: a memory growth within noise can
// come out negative. A missing p99 (results of an older run) gives none.
func divide(a, b *stats.Summary) (Ratio, bool) {
	if a == nil || b == nil || a.Median <= 0 || b.Median <= 0 || a.P95 <= 0 || b.P95 <= 0 {
		return Ratio{}, false
	}
	r := Ratio{Median: stats.Ratio(a.Median, b.Median), P95: stats.Ratio(a.P95, b.P95)}
	if a.P99 > 0 && b.P99 > 0 {
		r.P99 = stats.Ratio(a.P99, b.P99)
	}
	return r, isNum(r.Median) && isNum(r.P95) && isNum(r.P99)
}

// floorRatios divides, for each floor workload and runtime, the figure it
// is the floor of by the floor's figure.
func (r *Results) floorRatios() {
	for wi := range r.Workloads {
		wl := &r.Workloads[wi]
		wl.FloorRatios = nil
		if wl.FloorOf == nil {
			continue
		}
		above, floor := r.figure(wl.FloorOf.Workload, wl.FloorOf.Figure), r.figure(wl.Name, wl.FloorOf.Floor)
		if above == nil || floor == nil {
			continue
		}
		for _, fo := range floor.Outcomes {
			a := outcomeOf(above, fo.Runtime)
			if a == nil || a.Summary == nil || fo.Summary == nil || fo.Summary.Median <= 0 || fo.Summary.P95 <= 0 {
				continue
			}
			med, p95 := stats.Ratio(a.Summary.Median, fo.Summary.Median), stats.Ratio(a.Summary.P95, fo.Summary.P95)
			if isNum(med) && isNum(p95) {
				wl.FloorRatios = append(wl.FloorRatios, FloorRatio{Runtime: fo.Runtime, Median: med, P95: p95})
			}
		}
	}
}

// figure returns figure id of workload name, nil if it did not run.
func (r *Results) figure(name, id string) *FigureResult {
	for wi := range r.Workloads {
		if r.Workloads[wi].Name != name {
			continue
		}
		for fi := range r.Workloads[wi].Figures {
			if f := &r.Workloads[wi].Figures[fi]; f.ID == id {
				return f
			}
		}
	}
	return nil
}

// outcomeOf returns the runtime's outcome of f, nil if none.
func outcomeOf(f *FigureResult, runtime string) *Outcome {
	for i := range f.Outcomes {
		if f.Outcomes[i].Runtime == runtime {
			return &f.Outcomes[i]
		}
	}
	return nil
}

// isNum is false for NaN and infinities, which JSON cannot hold.
func isNum(f float64) bool { return f == f && f-f == 0 }

// Load reads results.json.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteJSON writes r to path, indented.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
