package supervisor

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// maxProcsEnv is the Go runtime's variable for its number of Ps.
const maxProcsEnv = "GOMAXPROCS"

// oneProcInits sets GOMAXPROCS=1 in the supervisor's environment, which
// libcontainer hands to every init it starts (it passes the supervisor's
// GOMAXPROCS variable, and nothing else of its environment, to the init).
// An init is this binary re-executed, once per container and once per
// exec: its Go runtime sets up one P per CPU, with their caches and
// threads, before libcontainer's init code reduces that to one for its
// own, single-threaded, work. The Go runtime reads the variable only when
// a process starts, so the supervisor keeps its own P count; an upgrade's
// new supervisor gets the supervisor's own value back (withOwnMaxProcs).
// Other children inherit the variable as they inherit the rest of the
// supervisor's environment: OCI runtime binaries (runc is Go too, and
// gains the same), and OCI hooks whose spec gives no environment.
// Container processes never see it: the init executes them with the
// spec's environment only.
//
// Measured with `perf stat -r 40 berth-supervisor --version` (the same Go
// runtime start and package initialisers as an init), task-clock:
// GOMAXPROCS=1 8.5-9.3 ms, 2 (this 2-CPU machine's default) 9.8-11.1 ms,
// 64 (a large node's default) 13.8-14.4 ms; wall time alike.
func oneProcInits() error {
	if err := os.Setenv(maxProcsEnv, "1"); err != nil {
		return fmt.Errorf("set %s for container inits: %w", maxProcsEnv, err)
	}
	return nil
}

// withOwnMaxProcs is env without its GOMAXPROCS variable, then with own
// (the supervisor's value at start) when there was one.
func withOwnMaxProcs(env []string, own *string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, maxProcsEnv+"=") })
	if own != nil {
		env = append(env, maxProcsEnv+"="+*own)
	}
	return env
}
