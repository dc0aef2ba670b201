// Package lcprocess converts an OCI process spec into the libcontainer
// process that starts it. The supervisor uses it for container inits and
// exec'd processes, and the benchmark's libcontainer floor
// (test/bench/cmd/libcontainer-floor) for its own, so that the floor starts
// exactly what berth starts.
package lcprocess

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/runtimecli"
)

// ErrRlimit is wrapped by New for an rlimit libcontainer does not know.
var ErrRlimit = errors.New("unknown rlimit")

// New returns the process for p: arguments, environment, user and groups,
// working directory and rlimits. A container init's capabilities,
// no_new_privileges, umask and SELinux label travel in the container's
// config (specconv), as does its AppArmor profile (the supervisor sets it
// there: specconv does not); an exec sets them on the process itself.
func New(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args: p.Args,
		Env:  p.Env,
		UID:  int(p.User.UID),
		GID:  int(p.User.GID),
		Cwd:  p.Cwd,
		// The init logs at libcontainer's level, not at nsexec's default
		// of debug: every debug line crosses a pipe and is decoded by the
		// parent, only to be dropped.
		LogLevel: strconv.Itoa(int(logrus.GetLevel())),
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		t, ok := runtimecli.RlimitType(rl.Type)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrRlimit, rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}
