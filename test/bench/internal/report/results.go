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
)

// Results is the whole of one run.
type Results struct {
	Date    time.Time       `json:"date"`
	Mode    string          `json:"mode"` // "full" or "quick"
	Config  workload.Config `json:"config"`
	Machine Machine         `json:"machine"`
	// Runtimes are in target order; ratios are first / second.
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
	// Ratio is first runtime / second runtime, when both have samples.
	Ratio *Ratio `json:"ratio,omitempty"`
}

// Ratio compares two runtimes' summaries.
type Ratio struct {
	Of     string  `json:"of"` // "berth/containerd"
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
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
// and of every floor.
func (r *Results) Finish() {
	r.floorRatios()
	if len(r.Runtimes) < 2 {
		return
	}
	of := r.Runtimes[0].Name + "/" + r.Runtimes[1].Name
	for wi := range r.Workloads {
		for fi := range r.Workloads[wi].Figures {
			f := &r.Workloads[wi].Figures[fi]
			f.Ratio = nil
			if len(f.Outcomes) < 2 || f.Outcomes[0].Summary == nil || f.Outcomes[1].Summary == nil {
				continue
			}
			a, b := f.Outcomes[0].Summary, f.Outcomes[1].Summary
			// A ratio of costs means something only when both are positive:
			// a memory growth within noise can come out negative.
			if a.Median <= 0 || b.Median <= 0 || a.P95 <= 0 || b.P95 <= 0 {
				continue
			}
			med, p95 := stats.Ratio(a.Median, b.Median), stats.Ratio(a.P95, b.P95)
			if isNum(med) && isNum(p95) {
				f.Ratio = &Ratio{Of: of, Median: med, P95: p95}
			}
		}
	}
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
