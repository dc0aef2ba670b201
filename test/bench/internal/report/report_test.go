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

func summary3(median, p95, p99 float64) *stats.Summary {
	return &stats.Summary{N: 3, Median: median, P95: p95, P99: p99}
}

// The ratio is berth over its best peer: the other runtime with the lowest
// median, figure by figure, skipping peers without samples.
func TestFinishRatios(t *testing.T) {
	tests := []struct {
		name   string
		berth  *stats.Summary
		ctrd2  *stats.Summary
		ctrd16 *stats.Summary
		want   *Ratio
	}{
		{"best is the second", summary3(1, 4, 8), summary3(2, 8, 16), summary3(4, 8, 8), &Ratio{Of: "berth/containerd-2.3", Peer: "containerd-2.3", Median: 0.5, P95: 0.5, P99: 0.5}},
		{"best is the third", summary3(1, 4, 8), summary3(4, 8, 16), summary3(2, 2, 2), &Ratio{Of: "berth/containerd-1.6", Peer: "containerd-1.6", Median: 0.5, P95: 2, P99: 4}},
		{"a peer unavailable", summary3(1, 4, 8), nil, summary3(2, 8, 16), &Ratio{Of: "berth/containerd-1.6", Peer: "containerd-1.6", Median: 0.5, P95: 0.5, P99: 0.5}},
		{"no p99 (an older run)", summary(1, 4), summary(2, 8), nil, &Ratio{Of: "berth/containerd-2.3", Peer: "containerd-2.3", Median: 0.5, P95: 0.5}},
		{"berth skipped", nil, summary(2, 8), summary(2, 8), nil},
		{"no peer measured", summary(1, 4), nil, nil, nil},
		{"negative growth", summary(-0.5, 0.1), summary(2, 8), nil, nil},
		{"zero peer", summary(1, 1), summary(0, 0), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Results{
				Runtimes: []Runtime{{Name: "berth"}, {Name: "containerd-2.3"}, {Name: "containerd-1.6"}},
				Workloads: []WorkloadResult{{Figures: []FigureResult{{
					Outcomes: []Outcome{
						{Runtime: "berth", Summary: tt.berth},
						{Runtime: "containerd-2.3", Summary: tt.ctrd2},
						{Runtime: "containerd-1.6", Summary: tt.ctrd16},
					},
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

// A figure with a floor gets each runtime's ratio to it, and the table a
// column for berth's; an unavailable runtime is said so, with its reason.
func TestFigureFloorAndUnavailable(t *testing.T) {
	ok := func(rt string, s *stats.Summary) Outcome { return Outcome{Runtime: rt, Status: StatusOK, Summary: s} }
	gone := Outcome{Runtime: "containerd-2.3", Status: StatusUnavailable, Note: "did not start"}
	r := &Results{
		Runtimes: []Runtime{{Name: "berth"}, {Name: "containerd-2.3", Unavailable: "did not start: boom"}, {Name: "containerd-1.6"}},
		Workloads: []WorkloadResult{{Name: "exec-sync", Rounds: 1, Figures: []FigureResult{
			{Figure: workload.Figure{ID: "exec.sync", Title: "ExecSync", Unit: "ms", Floor: "exec.floor"},
				Outcomes: []Outcome{ok("berth", summary3(6, 8, 9)), gone, ok("containerd-1.6", summary3(12, 16, 18))}},
			{Figure: workload.Figure{ID: "exec.floor", Title: "  floor", Unit: "ms"},
				Outcomes: []Outcome{ok("berth", summary3(3, 4, 4.5)), gone, ok("containerd-1.6", summary3(3, 4, 6))}},
		}}},
	}
	r.Finish()
	want := []FloorRatio{{Runtime: "berth", Median: 2, P95: 2}, {Runtime: "containerd-1.6", Median: 4, P95: 4}}
	if got := r.Workloads[0].Figures[0].FloorRatios; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("floor ratios %+v, want %+v", got, want)
	}
	var md strings.Builder
	r.markdown(&md)
	for _, want := range []string{
		"| figure | unit | berth median | p95 | p99 | containerd-2.3 median | p95 | p99 | containerd-1.6 median | p95 | p99 | berth ÷ best peer | berth ÷ floor | n |",
		"| ExecSync | ms | 6.00 | 8.00 | 9.00 | unavailable | | | 12.0 | 16.0 | 18.0 | 0.50 (containerd-1.6) | 2.00 | 3/0/3 |",
		"| ↳ floor | ms | 3.00 | 4.00 | 4.50 | unavailable | | | 3.00 | 4.00 | 6.00 | – | – | 3/0/3 |",
		"## Runtimes not measured\n\n- **containerd-2.3**: did not start: boom",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "## Notes") {
		t.Errorf("an unavailable runtime is noted per figure:\n%s", md.String())
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
	for _, want := range []string{"| ExecSync | ms | skipped | | | 18.0 | 29.0 | 0.00 | – | 0/3 |", "not supported by berth yet"} {
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

func TestLoadSummary(t *testing.T) {
	if mean, max := loadSummary(nil); mean != 0 || max != 0 {
		t.Errorf("no samples: %v, %v", mean, max)
	}
	if mean, max := loadSummary([]float64{1, 4, 1}); mean != 2 || max != 4 {
		t.Errorf("mean %v max %v, want 2 and 4", mean, max)
	}
}

// The time table has a row per workload that recorded its seconds, a dash
// for a runtime it did not run against, and the totals; a run without
// seconds (an older results.json) has no table.
func TestTimeSpent(t *testing.T) {
	names := []string{"berth", "containerd"}
	cases := []struct {
		name      string
		workloads []WorkloadResult
		want      []string
		absent    []string
	}{
		{
			name: "seconds",
			workloads: []WorkloadResult{
				{Name: "pod-start", Seconds: map[string]float64{"berth": 14.6, "containerd": 31.2}},
				{Name: "container-floor", Seconds: map[string]float64{"berth": 3.3}},
				{Name: "node-burst", Seconds: map[string]float64{"berth": 84, "containerd": 580}},
			},
			want: []string{
				"## Where the run's time went",
				"| workload | berth | containerd |",
				"| pod-start | 15 | 31 |",
				"| container-floor | 3 | – |",
				"| node-burst | 84 | 580 |",
				"| **all** | **102** (1.7 min) | **611** (10.2 min) |",
			},
		},
		{
			name:      "no seconds",
			workloads: []WorkloadResult{{Name: "pod-start"}},
			absent:    []string{"time went"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Results{Workloads: tc.workloads}
			var md strings.Builder
			r.timeSpent(&md, names)
			for _, want := range tc.want {
				if !strings.Contains(md.String(), want) {
					t.Errorf("lacks %q:\n%s", want, md.String())
				}
			}
			for _, no := range tc.absent {
				if strings.Contains(md.String(), no) {
					t.Errorf("has %q:\n%s", no, md.String())
				}
			}
		})
	}
}
