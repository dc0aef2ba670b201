package proctree

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNotSame: the process now at a pid is not the one the caller meant.
var ErrNotSame = errors.New("not the same process")

// SignalIf sends sig to pid if same() still holds once a pidfd pins the
// process: a pid read earlier (from /proc, a record) may since name another
// process that reused it, and kill(2) would signal that one. The pidfd is
// opened first and same() checked after, so what same() saw in /proc is the
// pidfd's process (a pid is not reused while its process, even a zombie,
// exists); if that process ended meanwhile, the signal goes nowhere.
// Gone (or never there) is nil; a process that fails same() is ErrNotSame.
func SignalIf(pid int, sig unix.Signal, same func() bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !same() {
		return fmt.Errorf("pid %d: %w", pid, ErrNotSame)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// SignalMembers sends sig to each of pids (listed earlier from a group:
// a cgroup's processes) that members still lists once a pidfd pins it. A
// pid whose process left meanwhile, and was perhaps reused by a process
// outside the group, is not signalled; a process that joined after the
// first listing is not either (callers that kill for good list again).
func SignalMembers(pids []int, sig unix.Signal, members func() ([]int, error)) error {
	fds := make(map[int]int, len(pids))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pidfd of %d: %w", pid, err)
		}
		fds[pid] = fd
	}
	now, err := members()
	if err != nil {
		return err
	}
	for _, pid := range now {
		fd, ok := fds[pid]
		if !ok {
			continue
		}
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d: %w", pid, err)
		}
	}
	return nil
}
