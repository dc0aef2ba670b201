package report

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/test/bench/internal/stats"
	"github.com/berth-cri/berth/test/bench/internal/workload"
)

func summary(median, p95 float64) *stats.Summary {
	return &stats.Summary{N: 3, Median: median, P95: p95}
}

func TestFinishRatios(t *testing.T) {
	tests := []struct {
		name string
		a, b *stats.Summary
		want *Ratio
	}{
		{"both measured", summary(1, 4), summary(2, 8), &Ratio{Of: "berth/containerd", Median: 0.5, P95: 0.5}},
		{"one skipped", nil, summary(2, 8), nil},
		{"negative growth", summary(-0.5, 0.1), summary(2, 8), nil},
		{"zero denominator", summary(1, 1), summary(0, 0), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Results{
				Runtimes: []Runtime{{Name: "berth"}, {Name: "containerd"}},
				Workloads: []WorkloadResult{{Figures: []FigureResult{{
					Outcomes: []Outcome{{Summary: tt.a}, {Summary: tt.b}},
				}}}},
			}
			r.Finish()
			got := r.Workloads[0].Figures[0].Ratio
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("ratio %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The report round-trips through JSON and shows a skipped figure as such.
func TestWriteAndLoad(t *testing.T) {
	dir := t.TempDir()
	r := &Results{
		Mode:     "quick",
		Runtimes: []Runtime{{Name: "berth"}, {Name: "containerd"}},
		Workloads: []WorkloadResult{{Name: "exec-sync", Rounds: 2, Figures: []FigureResult{{
			Figure: workload.Figure{ID: "exec.sync", Title: "ExecSync", Unit: "ms"},
			Outcomes: []Outcome{
				{Runtime: "berth", Status: StatusSkipped, Note: "not supported by berth yet (ExecSync: Unimplemented)"},
				{Runtime: "containerd", Status: StatusOK, Summary: summary(18, 29), Samples: []float64{18}},
			},
		}}}},
	}
	r.Finish()
	path := filepath.Join(dir, "results.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	back.markdown(&md)
	for _, want := range []string{"| ExecSync | ms | skipped | | 18.0 | 29.0 | – | 0/3 |", "not supported by berth yet"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md.String())
		}
	}
}

// A floor workload gets the ratio of the figure it is the floor of, for
// the runtimes it applies to, and its own section.
func TestFloor(t *testing.T) {
	fo := func(rt string, s *stats.Summary) Outcome {
		if s == nil {
			return Outcome{Runtime: rt, Status: StatusNA, Note: "setup: not applicable"}
		}
		return Outcome{Runtime: rt, Status: StatusOK, Summary: s}
	}
	r := &Results{
		Config:   workload.Config{FloorPeriod: workload.AutoPeriod},
		Runtimes: []Runtime{{Name: "berth"}, {Name: "containerd"}},
		Workloads: []WorkloadResult{
			{Name: "container-lifecycle", Figures: []FigureResult{
				{Figure: workload.Figure{ID: "ctr.cycle", Title: "cycle", Unit: "ms"}, Outcomes: []Outcome{fo("berth", summary(30, 40)), fo("containerd", summary(90, 99))}},
				{Figure: workload.Figure{ID: "ctr.create_start", Title: "  create+start", Unit: "ms"}, Outcomes: []Outcome{fo("berth", summary(15, 30)), fo("containerd", summary(50, 60))}},
			}},
			{Name: "container-floor", FloorOf: &workload.FloorOf{Workload: "container-lifecycle", Figure: "ctr.create_start", Floor: "floor.create_start", Pace: "ctr.cycle"},
				Figures: []FigureResult{
					{Figure: workload.Figure{ID: "floor.create_start", Title: "floor", Unit: "ms"}, Outcomes: []Outcome{fo("berth", summary(10, 12)), fo("containerd", nil)}},
					{Figure: workload.Figure{ID: "floor.interval", Title: "pace kept", Unit: "ms"}, Outcomes: []Outcome{fo("berth", summary(30, 31)), fo("containerd", nil)}},
				}},
		},
	}
	r.Finish()
	want := []FloorRatio{{Runtime: "berth", Median: 1.5, P95: 2.5}}
	if got := r.Workloads[1].FloorRatios; len(got) != 1 || got[0] != want[0] {
		t.Errorf("floor ratios %+v, want %+v", got, want)
	}
	var md strings.Builder
	r.markdown(&md)
	for _, want := range []string{
		"| figure | unit | berth median | berth p95 | n |",
		"| floor | ms | 10.0 | 12.0 | 3 |",
		"| **create+start (container-lifecycle) / floor** | × | **1.50** | 2.50 | |",
		"| pace kept | ms | 30.0 | 31.0 | 3 |",
		"| cycle (container-lifecycle's pace) | ms | 30.0 | 40.0 | 3 |",
		"Not measured for containerd",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "not applicable") {
		t.Errorf("results.md notes an n/a outcome:\n%s", md.String())
	}
}
