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
// child, so its pid cannot be reused meanwhile. A descendant's pid could:
// each is held by a pidfd, opened while its parent is still the member
// that led to it, and signalled through it.
func Kill(root int) {
	held := map[int]int{} // pid -> pidfd
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for range 20 {
		found := 0
		parents := descendantsWithParent(root)
		for _, m := range parents {
			if _, ok := held[m.pid]; ok {
				continue
			}
			fd, err := unix.PidfdOpen(m.pid, 0)
			if err != nil {
				continue // gone
			}
			// Still the process the scan saw: root itself, or a child of
			// a member (whose pid is pinned by its own pidfd, or is root).
			if ppid, ok := ParentOf(m.pid); m.pid != root && (!ok || ppid != m.parent) {
				unix.Close(fd)
				continue
			}
			held[m.pid] = fd
			unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0)
			found++
		}
		if found == 0 {
			break
		}
	}
	for _, fd := range held {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

// member is a process of root's tree and the parent it was found under.
type member struct{ pid, parent int }

// descendantsWithParent is descendants, each with its parent.
func descendantsWithParent(root int) []member {
	children := childrenByParent()
	out := []member{{root, 0}}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].pid] {
			out = append(out, member{c, out[i].pid})
		}
	}
	return out
}

// childrenByParent maps each pid to its children's, from /proc.
func childrenByParent() map[int][]int {
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return children
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := ParentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	return children
}

// ParentOf reads the ppid from /proc/<pid>/stat (field 4); ok is false
// when no process has that pid.
func ParentOf(pid int) (int, bool) {
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
