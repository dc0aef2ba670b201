package supervisor

import (
	"slices"
	"testing"
)

func TestOverrideEnv(t *testing.T) {
	for _, tc := range []struct {
		env, over, want []string
	}{
		{[]string{"A=1"}, nil, []string{"A=1"}},
		{[]string{"A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"A=1", "B=3", "C=4"}},
		{[]string{"A=1", "AB=2"}, []string{"A=9"}, []string{"A=9", "AB=2"}},
		{nil, []string{"X="}, []string{"X="}},
	} {
		if got := overrideEnv(tc.env, tc.over); !slices.Equal(got, tc.want) {
			t.Errorf("overrideEnv(%q, %q) = %q, want %q", tc.env, tc.over, got, tc.want)
		}
	}
}
