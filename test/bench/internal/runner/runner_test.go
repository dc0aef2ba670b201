package runner

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/test/bench/internal/report"
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
