package testsupport

import (
	"fmt"
	"os"
	"testing"
)

// RequireAllEnv names the variable that turns a missing capability from a
// skip into a failure. `make test` sets it to 1: CI's host has every
// capability below, so a skip there would be coverage lost unnoticed (a
// package uninstalled, a test run without root).
const RequireAllEnv = "BERTH_REQUIRE_ALL"

func requireAll() bool { return os.Getenv(RequireAllEnv) == "1" }

// Require skips t, saying what it needs, unless ok; under BERTH_REQUIRE_ALL=1
// it fails t instead. It is for what CI's host provides: root, mounting,
// runc, the CNI plugins, busybox, apparmor_parser. Facts of the platform
// that CI's host legitimately lacks (pure cgroup v2, systemd as PID 1,
// AppArmor on in the kernel, kernel features) are detected by the test and
// skipped with a plain t.Skip; the test VM covers them.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if requireAll() {
		t.Fatalf("%s (%s=1: a missing capability fails instead of skipping)", msg, RequireAllEnv)
		return
	}
	t.Skip(msg)
}

// RequireMain is Require for a TestMain whose whole package needs ok: it
// returns whether the tests can run. When they cannot, it says why and,
// under BERTH_REQUIRE_ALL=1, exits 1 at once.
func RequireMain(ok bool, format string, args ...any) bool {
	if ok {
		return true
	}
	msg := fmt.Sprintf(format, args...)
	if requireAll() {
		fmt.Fprintf(os.Stderr, "FAIL: %s (%s=1: a missing capability fails instead of skipping)\n", msg, RequireAllEnv)
		os.Exit(1)
	}
	fmt.Println("skipping:", msg)
	return false
}

// HaveBusybox reports whether the host's static busybox, which
// BusyboxRootfs copies, is installed.
func HaveBusybox() bool {
	_, err := os.Stat("/bin/busybox")
	return err == nil
}
