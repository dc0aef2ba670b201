package supervisor

import (
	"os"
	"slices"
	"testing"
)

func TestWithOwnMaxProcs(t *testing.T) {
	four := "4"
	tests := []struct {
		name string
		env  []string
		own  *string
		want []string
	}{
		{"none at start: the inits' value removed", []string{"A=1", "GOMAXPROCS=1"}, nil, []string{"A=1"}},
		{"the start's value back", []string{"GOMAXPROCS=1", "B=2"}, &four, []string{"B=2", "GOMAXPROCS=4"}},
		{"a name that only starts alike is kept", []string{"GOMAXPROCSX=1", "GOMAXPROCS=1"}, nil, []string{"GOMAXPROCSX=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.env)
			if got := withOwnMaxProcs(tt.env, tt.own); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(in, tt.env) {
				t.Errorf("the input was changed: %q", tt.env)
			}
		})
	}
}

func TestOneProcInits(t *testing.T) {
	t.Setenv(maxProcsEnv, "3") // restored when the test ends
	if err := oneProcInits(); err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv(maxProcsEnv); got != "1" {
		t.Errorf("GOMAXPROCS = %q, want 1: libcontainer passes this to each init", got)
	}
}
