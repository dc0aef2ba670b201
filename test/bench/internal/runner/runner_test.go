package runner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/test/bench/internal/report"
	"github.com/berth-cri/berth/test/bench/internal/target"
	"github.com/berth-cri/berth/test/bench/internal/workload"
)

func TestOutcome(t *testing.T) {
	unimpl := fmt.Errorf("setup: RunPodSandbox: %w", status.Error(codes.Unimplemented, "method RunPodSandbox not implemented"))
	other := errors.New("run: PullImage: boom")
	tests := []struct {
		name    string
		samples []float64
		err     error
		want    string
	}{
		{"samples, no error", []float64{1, 2}, nil, report.StatusOK},
		{"nothing, no error", nil, nil, report.StatusFailed},
		{"unimplemented at once", nil, unimpl, report.StatusSkipped},
		{"unimplemented behind a join", nil, errors.Join(other, unimpl), report.StatusSkipped},
		{"unimplemented after samples", []float64{1}, unimpl, report.StatusOK},
		{"other error after samples", []float64{1}, other, report.StatusPartial},
		{"other error at once", nil, other, report.StatusFailed},
		{"not applicable", nil, fmt.Errorf("setup: %w: no spec", workload.ErrNotApplicable), report.StatusNA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outcome("berth", tt.samples, tt.err)
			if o.Status != tt.want {
				t.Errorf("status %q, want %q (note %q)", o.Status, tt.want, o.Note)
			}
			if (o.Summary != nil) != (len(tt.samples) > 0) {
				t.Errorf("summary %v for %d samples", o.Summary, len(tt.samples))
			}
		})
	}
}

func TestBrief(t *testing.T) {
	err := fmt.Errorf("run: %w", status.Error(codes.Unimplemented, "method ExecSync not implemented"))
	if got, want := brief(err), "run: Unimplemented method ExecSync not implemented"; got != want {
		t.Errorf("brief = %q, want %q", got, want)
	}
}

// A floor runs when its own name or its workload's is selected.
func TestSelected(t *testing.T) {
	floor := workload.Entry{Name: "container-floor", Floor: &workload.FloorOf{Workload: "container-lifecycle"}}
	plain := workload.Entry{Name: "exec-sync"}
	tests := []struct {
		only  string
		entry workload.Entry
		want  bool
	}{
		{"", floor, true},
		{"container-floor", floor, true},
		{"^container-lifecycle$", floor, true},
		{"exec", floor, false},
		{"container-lifecycle", plain, false},
	}
	for _, tt := range tests {
		r := &Runner{}
		if tt.only != "" {
			r.Only = regexp.MustCompile(tt.only)
		}
		if got := r.selected(tt.entry); got != tt.want {
			t.Errorf("only %q, %s: selected %v, want %v", tt.only, tt.entry.Name, got, tt.want)
		}
	}
}

// Under auto, the floor keeps the pace of the workload it is the floor of,
// runtime by runtime; a set period wins.
func TestPace(t *testing.T) {
	e := workload.Entry{Name: "container-floor", Floor: &workload.FloorOf{Workload: "container-lifecycle", Pace: "ctr.cycle"}}
	r := &Runner{Config: workload.Config{FloorPeriod: workload.AutoPeriod}}
	if got := r.pace(e, "berth"); got != workload.DefaultPace {
		t.Errorf("pace before container-lifecycle ran: %v, want %v", got, workload.DefaultPace)
	}
	r.done = []report.WorkloadResult{{Name: "container-lifecycle", Figures: []report.FigureResult{{
		Figure:   workload.Figure{ID: "ctr.cycle"},
		Outcomes: []report.Outcome{outcome("berth", []float64{20, 25, 40}, nil), outcome("containerd", nil, errors.New("boom"))},
	}}}}
	if got, want := r.pace(e, "berth"), 25*time.Millisecond; got != want {
		t.Errorf("auto pace %v, want %v", got, want)
	}
	if got := r.pace(e, "containerd"); got != workload.DefaultPace {
		t.Errorf("auto pace of a runtime without samples: %v, want %v", got, workload.DefaultPace)
	}
	r.Config.FloorPeriod = "0"
	if got := r.pace(e, "berth"); got != 0 {
		t.Errorf("pace with period 0: %v", got)
	}
}

// An unavailable runtime gets no round, and each figure says why.
func TestUnavailableTarget(t *testing.T) {
	var b strings.Builder
	r := &Runner{Config: workload.Config{Rounds: 2}, Log: &b, Targets: []*target.Target{
		{Spec: target.Spec{Name: "containerd-2.3", Unavailable: "go install failed"}},
	}}
	e := workload.Entry{
		Name:    "w",
		Figures: []workload.Figure{{ID: "f", Unit: "ms"}},
		Rounds:  func(workload.Config) int { return 2 },
		New:     func(workload.Config) workload.Workload { panic("a workload ran against an unavailable runtime") },
	}
	res := r.Run(context.Background(), []workload.Entry{e})
	o := res[0].Figures[0].Outcomes[0]
	if o.Status != report.StatusUnavailable || o.Note != "go install failed" {
		t.Errorf("outcome %+v, want unavailable with the reason", o)
	}
	if _, ok := res[0].Seconds["containerd-2.3"]; ok {
		t.Errorf("an unavailable runtime has a time: %v", res[0].Seconds)
	}
}
