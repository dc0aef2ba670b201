package criu

import (
	"errors"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want [3]int
		ok   bool
	}{
		{"Version: 4.1.1\n", [3]int{4, 1, 1}, true},
		{"Version: 3.17\nGitID: v3.17-1\n", [3]int{3, 17, 0}, true},
		{"Version: 4.2-rc1\n", [3]int{4, 2, 0}, true},
		{"criu: no\n", [3]int{}, false},
		{"Version: x\n", [3]int{}, false},
	} {
		got, ok := parseVersion([]byte(tc.out))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, %v", tc.out, got, ok, tc.want, tc.ok)
		}
	}
}

// TestMinVersion: kernels from 6.13 on need CRIU 4.1 (the split vDSO).
func TestMinVersion(t *testing.T) {
	for rel, want := range map[string][3]int{
		"6.18.44-fc-v1272": {4, 1, 0},
		"6.13.0":           {4, 1, 0},
		"7.0.1":            {4, 1, 0},
		"6.12.9-amd64":     {3, 16, 0},
		"6.1.0-28-amd64":   {3, 16, 0},
	} {
		if got := MinVersion(rel); got != want {
			t.Errorf("MinVersion(%s) = %v, want %v", rel, got, want)
		}
	}
	if !less([3]int{3, 17, 1}, [3]int{4, 1, 0}) || less([3]int{4, 1, 1}, [3]int{4, 1, 0}) {
		t.Fatal("less")
	}
}

func TestUsable(t *testing.T) {
	if err := (Info{Error: "too old"}).Usable(); !errors.Is(err, errdefs.ErrUnimplemented) {
		t.Fatalf("Usable = %v", err)
	}
	if err := (Info{Path: "/x", Version: "4.1.1"}).Usable(); err != nil {
		t.Fatal(err)
	}
}
