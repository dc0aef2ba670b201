// Package proctree kills a process and everything it started, as an exec's
// timeout or a vanished client requires. berthd (execs through a runtime
// binary) and the supervisor (execs it runs itself) both use it.
package proctree

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Kill kills root and all its descendants. Every member is stopped first,
// so that none can fork a child that escapes between the scan and the kill
// (an orphan would be reparented away and lost from the tree); scanning
// repeats until no new member appears. root must be the caller's unreaped
// child, so its pid cannot be reused meanwhile.
func Kill(root int) {
	seen := map[int]bool{}
	for range 20 {
		found := 0
		for _, pid := range descendants(root) {
			if !seen[pid] {
				seen[pid] = true
				unix.Kill(pid, unix.SIGSTOP)
				found++
			}
		}
		if found == 0 {
			break
		}
	}
	for pid := range seen {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// descendants lists root (if it still runs) and every process below it,
// from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// parentOf reads the ppid from /proc/<pid>/stat (field 4).
func parentOf(pid int) (int, bool) {
	fields, ok := statFields(pid)
	if !ok || len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	return ppid, err == nil
}

// StartTime returns pid's start time (clock ticks since boot, field 22 of
// /proc/<pid>/stat): a pid and its start time name one process, even after
// the pid is reused. ok is false when no process has that pid, or only a
// zombie does: it has ended (and released its namespaces).
func StartTime(pid int) (start uint64, ok bool) {
	fields, ok := statFields(pid)
	if !ok || len(fields) < 20 || string(fields[0]) == "Z" || string(fields[0]) == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	return start, err == nil
}

// statFields returns the fields of /proc/<pid>/stat from field 3 (state)
// on: they follow the parenthesised command name, which may itself hold
// spaces or parens.
func statFields(pid int) ([][]byte, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, false
	}
	return bytes.Fields(data[i+1:]), true
}
