package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/berth-cri/berth/internal/keeper"
	"github.com/berth-cri/berth/internal/supervisor"
)

// keeperMode: this start is the keeper's, the process berthd starts. The
// supervisor is the keeper's child (keeper.FDEnv set), the same process
// re-executed by an in-place upgrade (which keeps the keeper it had, or
// had none), or asked for alone (--no-keeper).
func keeperMode(o options) bool {
	_, kept := os.LookupEnv(keeper.FDEnv)
	_, upgrading := os.LookupEnv(supervisor.UpgradeEnv)
	_, sealing := os.LookupEnv(sealedFromEnv)
	return !kept && !upgrading && !sealing && !o.noKeeper
}

// exitKeeperRunning is the exit code of a keeper that found another one
// running for its state dir (a start race berthd's EnsureRunning allows).
const exitKeeperRunning = 0

// runKeeper runs the keeper until SIGTERM; it returns the exit code.
func runKeeper(o options) int {
	setProcessName("berth-keeper")
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-keeper: find own executable: %v\n", err)
		return 1
	}
	err = keeper.Run(keeper.Config{
		StateDir: o.stateDir,
		// The supervisor is started from the file, as berthd would start
		// it: a supervisor started after a package upgrade runs the new
		// binary (and seals its own copy).
		Path: exe,
		Args: os.Args,
		Env:  os.Environ(),
		Setup: func() {
			// Before the first supervisor starts, so it starts there too.
			joinOwnCgroup(newLogger(os.Stderr, false), o.cgroup, o.scope)
		},
	})
	if errors.Is(err, keeper.ErrRunning) {
		return exitKeeperRunning
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-keeper: %v\n", err)
		return 1
	}
	return 0
}
