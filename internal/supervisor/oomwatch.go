package supervisor

import (
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// oomWatch keeps the OOM kill count of a systemd scope's cgroup while its
// container runs. systemd stops a scope, and removes its cgroup with
// memory.events, as soon as its last process is gone: often before the
// supervisor has handled the exit (measured in the test VM), so the count
// read at exit finds no file. The kernel signals every change of
// memory.events to inotify (cgroup_file_notify) at the kill, before the
// killed init is even dead, so a watcher re-reading the file then has the
// count while the cgroup is still there. A cgroupfs cgroup stays until
// the container is deleted: nothing to watch.
type oomWatch struct {
	f      *os.File // the inotify instance; nil when not watching
	events *os.File // memory.events, opened once: a re-read is one pread
	done   chan struct{}
	count  atomic.Uint64

	// The kernel log (kmsgoom.go), asked at stop when the count stayed 0.
	kmsg  *kernelOOMs
	rel   string // the scope's path as the kernel prints it
	pid   int    // the container's init
	since uint64 // the log's last record when the watch began
}

// watchOOM starts watching the memory cgroup directory memcg, of the
// container whose init is pid, if it is a systemd scope's; a watch that
// cannot be set up relies on the kernel log alone.
func watchOOM(memcg string, pid int, kmsg *kernelOOMs) *oomWatch {
	w := &oomWatch{}
	if !strings.HasSuffix(memcg, ".scope") {
		return w
	}
	w.kmsg, w.rel, w.pid, w.since = kmsg, relMemcg(memcg), pid, kmsg.mark()
	// Non-blocking, so that the Read below parks in Go's poller, not an
	// OS thread per container.
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return w
	}
	if _, err := unix.InotifyAddWatch(fd, memcg+"/memory.events", unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return w
	}
	events, err := os.Open(memcg + "/memory.events")
	if err != nil {
		unix.Close(fd)
		return w
	}
	w.f, w.events, w.done = os.NewFile(uintptr(fd), "inotify"), events, make(chan struct{})
	w.reread(make([]byte, 4096))
	go w.run()
	return w
}

// run re-reads the counters at every change the kernel signals. The
// re-read races systemd's removal of the emptied scope, so it is kept as
// short as it can be: a pread of the file opened at the start, no path
// lookup.
func (w *oomWatch) run() {
	defer close(w.done)
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			return // closed, or the watch is gone with the file
		}
		w.reread(buf)
	}
}

// reread raises the count to what memory.events says now, if it can read it.
func (w *oomWatch) reread(buf []byte) {
	n, err := unix.Pread(int(w.events.Fd()), buf, 0)
	if err != nil || n <= 0 {
		return // the cgroup is gone: its last count stays
	}
	if c := parseOOMKills(buf[:n]); c > w.count.Load() {
		w.count.Store(c)
	}
}

// stop ends the watch and returns the highest count seen (0 when not
// watching). A re-read the watcher was doing when stopped is waited for.
// A count still 0 is checked against the kernel log, which has every kill
// the watcher lost to systemd's removal of the scope.
func (w *oomWatch) stop() uint64 {
	if w.f != nil {
		w.f.Close()
		<-w.done
		w.events.Close()
		w.f = nil
	}
	if c := w.count.Load(); c > 0 || w.kmsg == nil {
		return c
	}
	w.count.Store(w.kmsg.killed(w.rel, w.pid, w.since))
	w.kmsg = nil // asked once: stop is called again by a deferred call
	return w.count.Load()
}
