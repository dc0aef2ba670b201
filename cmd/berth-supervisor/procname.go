package main

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setProcessName sets the name ps, pgrep and /proc/PID/comm show for this
// process. prctl(PR_SET_NAME) names only the calling thread, and the Go
// runtime may have moved main's goroutine off the process's first thread
// (a preemption is enough), whose name is the one those show; a keeper
// would then keep its binary's name. /proc/self/comm names the
// thread-group leader, whichever thread writes it.
func setProcessName(name string) {
	if os.WriteFile("/proc/self/comm", []byte(name), 0) == nil {
		return
	}
	b := append([]byte(name), 0)
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
