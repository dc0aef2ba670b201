package network

import (
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Pod annotations that limit a pod's traffic, in bits per second.
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// Limits kubelet applies to the annotations; outside them a value is surely
// a mistake (a missing suffix, usually).
const (
	minBandwidth = 1_000                 // 1k
	maxBandwidth = 1_000_000_000_000_000 // 1P
)

// Bandwidth is the CNI bandwidth capability: rates in bit/s, bursts in bits.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// ParseBandwidth reads the bandwidth annotations; nil when neither is set.
// The annotations carry no burst, and the bandwidth plugin refuses a rate
// without one, so the burst is the largest the plugin takes (math.MaxUint32
// bits), as containerd and CRI-O send it.
func ParseBandwidth(annotations map[string]string) (*Bandwidth, error) {
	var bw Bandwidth
	for _, a := range []struct {
		key         string
		rate, burst *uint64
	}{
		{IngressBandwidthAnnotation, &bw.IngressRate, &bw.IngressBurst},
		{EgressBandwidthAnnotation, &bw.EgressRate, &bw.EgressBurst},
	} {
		s, ok := annotations[a.key]
		if !ok {
			continue
		}
		v, err := parseQuantity(s)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", a.key, err)
		}
		if v < minBandwidth || v > maxBandwidth {
			return nil, fmt.Errorf("annotation %s=%q is outside 1k..1P: %w", a.key, s, errdefs.ErrInvalidArgument)
		}
		*a.rate, *a.burst = v, math.MaxUint32
	}
	if bw == (Bandwidth{}) {
		return nil, nil
	}
	return &bw, nil
}

// quantitySuffixes are the Kubernetes quantity suffixes and their factors.
var quantitySuffixes = map[string]*big.Rat{
	"n": big.NewRat(1, 1_000_000_000), "u": big.NewRat(1, 1_000_000), "m": big.NewRat(1, 1000),
	"":  big.NewRat(1, 1),
	"k": pow(10, 3), "M": pow(10, 6), "G": pow(10, 9), "T": pow(10, 12), "P": pow(10, 15), "E": pow(10, 18),
	"Ki": pow(2, 10), "Mi": pow(2, 20), "Gi": pow(2, 30), "Ti": pow(2, 40), "Pi": pow(2, 50), "Ei": pow(2, 60),
}

func pow(base, exp int64) *big.Rat {
	return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil))
}

// parseQuantity parses a non-negative Kubernetes quantity ("10M", "1.5Gi",
// "500k", "1e6") and rounds it up to an integer, as Quantity.Value does.
func parseQuantity(s string) (uint64, error) {
	bad := func() (uint64, error) {
		return 0, fmt.Errorf("quantity %q: %w", s, errdefs.ErrInvalidArgument)
	}
	num := strings.TrimLeft(s, "+")
	end := 0
	for end < len(num) && (num[end] >= '0' && num[end] <= '9' || num[end] == '.') {
		end++
	}
	digits, suffix := num[:end], num[end:]
	if digits == "" || digits == "." || strings.Count(digits, ".") > 1 {
		return bad()
	}
	v, ok := new(big.Rat).SetString(digits)
	if !ok {
		return bad()
	}
	if factor, ok := quantitySuffixes[suffix]; ok {
		v.Mul(v, factor)
	} else if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		var exp int64
		if _, err := fmt.Sscanf(suffix[1:], "%d", &exp); err != nil || fmt.Sprint(exp) != strings.TrimPrefix(suffix[1:], "+") || exp < -30 || exp > 30 {
			return bad()
		}
		if exp >= 0 {
			v.Mul(v, pow(10, exp))
		} else {
			v.Quo(v, pow(10, -exp))
		}
	} else {
		return bad()
	}
	// Round up: a limit of "0.5" bit/s is not unlimited.
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsUint64() {
		return bad()
	}
	return q.Uint64(), nil
}
