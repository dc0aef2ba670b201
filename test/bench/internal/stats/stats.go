// Package stats sums up benchmark samples. Medians and 95th and 99th
// percentiles, not means: a VM's latencies have a long tail, and one stall
// must not move the figure a reader compares.
package stats

import (
	"math"
	"sort"
)

// Summary describes one set of samples.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// Summarize computes the summary of samples; the zero Summary for none.
func Summarize(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Summary{
		N:      len(s),
		Median: Quantile(s, 0.5),
		P95:    Quantile(s, 0.95),
		P99:    Quantile(s, 0.99),
		Min:    s[0],
		Max:    s[len(s)-1],
		Mean:   sum / float64(len(s)),
	}
}

// Quantile is the q-quantile of sorted samples, interpolated linearly
// between the two closest ranks (so the median of an even count is the mean
// of the middle two, and p95 of few samples does not jump to the maximum).
func Quantile(sorted []float64, q float64) float64 {
	switch len(sorted) {
	case 0:
		return math.NaN()
	case 1:
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}

// Ratio is a/b, or NaN when either is missing (zero or NaN b).
func Ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}
