// Package runtimecli holds what berthd's exec path and the supervisor both
// need to drive an OCI runtime: rlimit names and the runtime's JSON log. It
// imports nothing heavy, since the supervisor keeps a small dependency budget.
package runtimecli

import (
	"bufio"
	"encoding/json"
	"os"

	"golang.org/x/sys/unix"
)

// rlimitTypes maps the OCI spec's rlimit names to the kernel's resources.
var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// RlimitType is the kernel resource of an OCI rlimit name ("RLIMIT_NOFILE").
func RlimitType(name string) (int, bool) {
	t, ok := rlimitTypes[name]
	return t, ok
}

// LastLogError returns the last error-level message of a runc-style JSON
// log file (--log-format json), "" if none: the runtime's own account of
// why it failed, better than its exit status.
func LastLogError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			last = e.Msg
		}
	}
	return last
}
