package supervisor

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
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

// TestCommandProcessLeavesBase: the spec's process is shared by every exec
// of a container (specProcess); building one exec's process changes none
// of it, whatever the overrides.
func TestCommandProcessLeavesBase(t *testing.T) {
	env := make([]string, 2, 8) // spare capacity: an append in place would show
	env[0], env[1] = "A=1", "B=2"
	base := &specs.Process{Args: []string{"sleep"}, Env: env, Cwd: "/", User: specs.User{UID: 5}}
	for _, x := range []*v1.ExecRequest{
		{Args: []string{"true"}},
		{Args: []string{"env"}, Env: []string{"B=3", "C=4"}, Cwd: "/tmp", User: &specs.User{UID: 7}},
		{Args: []string{"sh"}, Terminal: true},
	} {
		sp := commandProcess(base, x)
		if !slices.Equal(sp.Args, x.Args) || sp.Terminal != x.Terminal {
			t.Errorf("commandProcess(%+v) = %+v: not the request's command", x, sp)
		}
		sp.Env = append(sp.Env, "D=5")
	}
	if !slices.Equal(base.Args, []string{"sleep"}) || !slices.Equal(env, []string{"A=1", "B=2"}) ||
		env[:3][2] != "" || base.Cwd != "/" || base.User.UID != 5 || base.Terminal {
		t.Errorf("base changed: %+v, env backing %q", base, env[:3])
	}
}
