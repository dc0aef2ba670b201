package testsupport

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// CrashSupervisor kills the supervisor of stateDir (pid sup) with SIGKILL
// and keeps any new one from serving until the returned function is
// called: the keeper above it (pid keeper) goes on reaping and recording,
// but each supervisor it starts finds the supervisor lock taken (by the
// test) and exits, to be started again after the keeper's backoff. That
// opens an outage of the length a test needs, where the keeper alone
// would start the next supervisor within milliseconds.
func CrashSupervisor(t testing.TB, stateDir string, keeper, sup int) (end func()) {
	t.Helper()
	// The keeper is stopped while the supervisor dies and the test takes
	// the lock, so it starts no supervisor in between.
	if err := syscall.Kill(keeper, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the keeper: %v", err)
	}
	defer syscall.Kill(keeper, syscall.SIGCONT)
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the supervisor: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(stateDir, "supervisor", "supervisor.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The lock frees once the killed supervisor is gone (a zombie holds
	// no files).
	deadline := time.Now().Add(Slow(5 * time.Second))
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the killed supervisor's lock is still held")
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() { lock.Close() })
	return func() { lock.Close() }
}

// StopSupervisor ends a supervisor started for a test: SIGTERM to its
// keeper (keeper, when not 0), which passes it on and ends with it, else
// to the supervisor (pid). A supervisor signalled alone under a keeper
// would be started again.
func StopSupervisor(pid, keeper int) {
	if keeper != 0 {
		syscall.Kill(keeper, syscall.SIGTERM)
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
}
