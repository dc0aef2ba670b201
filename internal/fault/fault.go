// Package fault kills berthd at named points of its work, for the tests
// that check what a crash at any instant leaves behind (docs/fault-points.md).
//
// The points are compiled in only with the build tag faultinject, which
// the test builds of berthd use (Makefile TEST_TAGS, test/internal/harness,
// test/vm); without it Point and Reader do nothing, so a production berthd
// cannot be made to kill itself, and refuses to start when BERTH_FAULT is
// set (see Check) rather than ignore it silently.
//
// With the tag, it is off unless the environment variable BERTH_FAULT
// names a point when the process starts: "sandbox.after-cni-add" kills at
// the first hit of that point, "sandbox.after-cni-add@3" at the third. A
// disabled point costs one string comparison. The kill is SIGKILL to the
// process itself, so no deferred function, no rollback and no graceful
// stop runs: exactly what a crash, an OOM kill or a power cut leaves.
package fault

import (
	"fmt"
	"os"
)

// EnvVar is the environment variable read at start.
const EnvVar = "BERTH_FAULT"

// Check returns an error when EnvVar names a point in a process built without
// the faultinject tag: a crash test run against such a binary would
// otherwise pass without any crash happening.
func Check() error {
	if v := os.Getenv(EnvVar); v != "" && !Enabled {
		return fmt.Errorf("%s=%q is set but this binary was built without the faultinject build tag, so it has no fault points", EnvVar, v)
	}
	return nil
}
