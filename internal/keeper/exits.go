package keeper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// An exit record is one small text file per process the keeper reaped,
// in ExitsDir, named "<pid>-<start time>" (the start time in clock ticks
// since boot, /proc/<pid>/stat field 22, so a reused pid never matches an
// older record) and holding "<wait status> <unix nanoseconds>\n": the
// status as wait(2) encodes it and the time the keeper saw the exit. It is
// written under a temporary name and renamed, so a reader sees all of it
// or nothing. The format is part of the contract between a keeper and any
// later supervisor (an upgraded supervisor runs under the old keeper):
// change it only by adding a new file name.

// ExitsDir is where the keeper of stateDir records exits.
func ExitsDir(stateDir string) string { return filepath.Join(stateDir, "supervisor", "exits") }

// ExitName is the record file name of the process pid that started at
// start.
func ExitName(pid int, start uint64) string {
	return strconv.Itoa(pid) + "-" + strconv.FormatUint(start, 10)
}

// tmpPrefix marks a record being written.
const tmpPrefix = ".tmp-"

// WriteExit records that pid (started at start) ended with status at at.
func WriteExit(dir string, pid int, start uint64, status unix.WaitStatus, at time.Time) error {
	name := ExitName(pid, start)
	tmp := filepath.Join(dir, tmpPrefix+name)
	data := strconv.AppendUint(nil, uint64(status), 10)
	data = append(data, ' ')
	data = strconv.AppendInt(data, at.UnixNano(), 10)
	data = append(data, '\n')
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write exit record: %w", err)
	}
	return nil
}

// ErrNoExit: no exit record for that process.
var ErrNoExit = errors.New("no exit record")

// ReadExit returns the recorded exit of pid (started at start); an error
// wrapping ErrNoExit if there is none.
func ReadExit(dir string, pid int, start uint64) (unix.WaitStatus, time.Time, error) {
	name := ExitName(pid, start)
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, fmt.Errorf("%s: %w", name, ErrNoExit)
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, time.Time{}, fmt.Errorf("malformed exit record %s: %q", name, data)
	}
	st, err1 := strconv.ParseUint(f[0], 10, 32)
	ns, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, time.Time{}, fmt.Errorf("malformed exit record %s: %w", name, err)
	}
	return unix.WaitStatus(st), time.Unix(0, ns), nil
}

// RemoveExit removes the record of pid (started at start), once consumed.
func RemoveExit(dir string, pid int, start uint64) {
	os.Remove(filepath.Join(dir, ExitName(pid, start)))
}

// SweepExits removes every record whose name keep does not report true
// for: exits of processes that were no container's init (an exec's
// process, a runtime's helper). A record being written is left alone
// unless a keeper died writing it long ago.
func SweepExits(dir string, keep func(name string) bool) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Minute {
				continue
			}
		} else if keep(e.Name()) {
			continue
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

// StartTime returns field 22 of /proc/<pid>/stat (start time in clock
// ticks since boot): a pid plus its start time names one process, even
// after the pid is reused. A zombie still has it.
func StartTime(pid int) (uint64, error) {
	_, start, err := Stat(pid)
	return start, err
}

// Stat returns the parent pid (field 4) and start time (field 22) of
// /proc/<pid>/stat.
func Stat(pid int) (ppid int, start uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm (field 2) may contain spaces and parentheses: cut at the last ')'.
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if i < 0 || len(fields) < 20 {
		return 0, 0, fmt.Errorf("malformed stat of %d", pid)
	}
	ppid, err1 := strconv.Atoi(fields[1])
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("malformed stat of %d: %w", pid, err)
	}
	return ppid, start, nil
}
