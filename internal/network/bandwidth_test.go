package network

import (
	"errors"
	"math"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "10M", want: 10_000_000},
		{in: "1k", want: 1000},
		{in: "1Ki", want: 1024},
		{in: "1.5Gi", want: 1_610_612_736},
		{in: "2.5M", want: 2_500_000},
		{in: "1e6", want: 1_000_000},
		{in: "1E3", want: 1000},
		{in: "1500m", want: 2}, // 1.5 rounds up
		{in: "+7", want: 7},
		{in: "100", want: 100},
		{in: ".5k", want: 500},
		{in: "", bad: true},
		{in: "M", bad: true},
		{in: "-1M", bad: true},
		{in: "1.2.3", bad: true},
		{in: "10MB", bad: true},
		{in: "1e", bad: true},
		{in: "1e1x", bad: true},
		{in: "99999E", bad: true}, // overflows uint64
		{in: " 1M", bad: true},
	} {
		got, err := parseQuantity(tc.in)
		if tc.bad {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("parseQuantity(%q) = %d, %v; want ErrInvalidArgument", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"10M", "1.5Gi", "1e6", "500m", "", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseQuantity(s) // must not panic
	})
}

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want *Bandwidth
		bad  bool
	}{
		{name: "none", ann: map[string]string{"other": "1"}, want: nil},
		{name: "ingress", ann: map[string]string{IngressBandwidthAnnotation: "10M"},
			want: &Bandwidth{IngressRate: 10_000_000, IngressBurst: math.MaxUint32}},
		{name: "both", ann: map[string]string{IngressBandwidthAnnotation: "1k", EgressBandwidthAnnotation: "1G"},
			want: &Bandwidth{IngressRate: 1000, IngressBurst: math.MaxUint32, EgressRate: 1_000_000_000, EgressBurst: math.MaxUint32}},
		{name: "too small", ann: map[string]string{EgressBandwidthAnnotation: "10"}, bad: true},
		{name: "too large", ann: map[string]string{EgressBandwidthAnnotation: "2P"}, bad: true},
		{name: "garbage", ann: map[string]string{IngressBandwidthAnnotation: "fast"}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBandwidth(tc.ann)
			if tc.bad {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
