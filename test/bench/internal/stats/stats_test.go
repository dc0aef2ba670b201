package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64
		want    Summary
	}{
		{"none", nil, Summary{}},
		{"one", []float64{7}, Summary{N: 1, Median: 7, P95: 7, P99: 7, Min: 7, Max: 7, Mean: 7}},
		{"even count, unsorted", []float64{4, 1, 3, 2}, Summary{N: 4, Median: 2.5, P95: 3.85, P99: 3.97, Min: 1, Max: 4, Mean: 2.5}},
		{"odd count", []float64{5, 1, 3}, Summary{N: 3, Median: 3, P95: 4.8, P99: 4.96, Min: 1, Max: 5, Mean: 3}},
		// 1..101: each quantile falls on a sample.
		{"a hundred and one", seq(101), Summary{N: 101, Median: 51, P95: 96, P99: 100, Min: 1, Max: 101, Mean: 51}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.samples)
			if got.N != tt.want.N || !near(got.Median, tt.want.Median) || !near(got.P95, tt.want.P95) || !near(got.P99, tt.want.P99) ||
				got.Min != tt.want.Min || got.Max != tt.want.Max || !near(got.Mean, tt.want.Mean) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.samples, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	if r := Ratio(1, 2); r != 0.5 {
		t.Errorf("Ratio(1, 2) = %v", r)
	}
	for _, r := range []float64{Ratio(1, 0), Ratio(math.NaN(), 1), Ratio(1, math.NaN())} {
		if !math.IsNaN(r) {
			t.Errorf("missing operand gave %v, want NaN", r)
		}
	}
}

// seq is 1..n in reverse order.
func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(n - i)
	}
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
