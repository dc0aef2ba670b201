package supervisor

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// kernelOOMs reads the kernel's own account of memory cgroup OOM kills
// from /dev/kmsg, the last witness of an OOM kill in a systemd scope.
// systemd removes a scope's cgroup, memory.events with it, once its last
// process is gone; under load that can happen before even the inotify
// watch of oomwatch.go has re-read the counter (seen in the test VM). The
// kernel logs every kill synchronously in the OOM path, before it sends
// the SIGKILL, so once the supervisor has reaped the init, the record of
// its kill is already in the ring buffer: reading the buffer to its end
// then cannot miss it. cAdvisor (and so kubelet's OOM events) relies on
// the same lines.
//
// Two record kinds count, both printed by the OOM killer for every kill:
//
//	oom-kill:constraint=...,oom_memcg=/a.slice/x.scope,task_memcg=/a.slice/x.scope,task=stress,pid=123,uid=0
//	Memory cgroup out of memory: Killed process 123 (stress) total-vm:...
//
// The first names the victim's cgroup but is rate limited (10 per 5 s);
// the second is not, but names only the pid, which is matched against the
// container's init alone, and only for records logged after the watch
// began, so that a recycled pid cannot match an old kill.
type kernelOOMs struct {
	// openLog opens the log: /dev/kmsg, non-blocking, where each read
	// returns one record and EAGAIN ends it.
	openLog func() (io.ReadCloser, error)

	once sync.Once
	mu   sync.Mutex
	f    io.ReadCloser // nil when the log cannot be read: the OOM path then relies on memory.events alone
	seq  uint64        // the sequence number of the last record read
	// kills are the recent kills, oldest first, at most maxKills.
	kills []kmsgKill
}

type kmsgKill struct {
	seq   uint64
	memcg string // the victim's cgroup, relative to the hierarchy's root; "" for a pid-only record
	pid   int
}

// maxKills bounds what is kept: enough for every container exiting in a
// burst of kills, small enough to scan at each exit.
const maxKills = 1024

func newKernelOOMs() *kernelOOMs {
	return &kernelOOMs{openLog: func() (io.ReadCloser, error) {
		fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: "/dev/kmsg", Err: err}
		}
		return rawFD(fd), nil
	}}
}

// rawFD reads with read(2) itself: an *os.File would park a read in Go's
// poller at EAGAIN, where this reader needs the EAGAIN that says the log
// has no more records. Reads at EAGAIN return at once, so no thread is
// held.
type rawFD int

func (fd rawFD) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

func (fd rawFD) Close() error { return unix.Close(int(fd)) }

// open reads the whole ring buffer once, so that kills logged before the
// supervisor started (a restart, an upgrade) are known too: a scope's
// path names its container, so an old record cannot be mistaken for a
// new container's.
func (k *kernelOOMs) open() {
	k.once.Do(func() {
		f, err := k.openLog()
		if err != nil {
			return
		}
		k.f = f
	})
}

// mark reads the log to its end and returns the last sequence number: the
// watch of a container started at mark accepts pid-only records after it.
func (k *kernelOOMs) mark() uint64 {
	if k == nil {
		return 0
	}
	var seq uint64
	k.read(func() { seq = k.seq })
	return seq
}

// read reads the log to its end and calls f with the records held.
func (k *kernelOOMs) read(f func()) {
	k.open()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.drainLocked()
	f()
}

// killed reads the log to its end and says how many kills it holds of a
// process in the memory cgroup memcg (relative path) or below it, or,
// after sequence number since, of the process pid.
func (k *kernelOOMs) killed(memcg string, pid int, since uint64) uint64 {
	if k == nil {
		return 0
	}
	var n uint64
	k.read(func() {
		for _, r := range k.kills {
			switch {
			case r.memcg != "" && (r.memcg == memcg || strings.HasPrefix(r.memcg, memcg+"/")):
				n++
			case r.memcg == "" && pid > 0 && r.pid == pid && r.seq > since:
				n++
			}
		}
	})
	return n
}

// drainLocked reads every record up to the end of the log. Each read of
// /dev/kmsg returns one record; EAGAIN says there is no more; EPIPE says
// records were overwritten before they were read, and the next read goes
// on from the oldest one left.
func (k *kernelOOMs) drainLocked() {
	if k.f == nil {
		return
	}
	buf := make([]byte, 8192)
	for {
		n, err := k.f.Read(buf)
		switch {
		case errors.Is(err, unix.EPIPE):
			continue
		case err != nil || n == 0:
			// EAGAIN (the end), or a log that cannot be read further.
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, io.EOF) {
				k.f.Close()
				k.f = nil
			}
			return
		}
		seq, msg, ok := parseKmsgRecord(buf[:n])
		if !ok {
			continue
		}
		k.seq = seq
		if r, ok := parseOOMRecord(msg); ok {
			r.seq = seq
			k.kills = append(k.kills, r)
			if len(k.kills) > maxKills {
				k.kills = append(k.kills[:0], k.kills[len(k.kills)-maxKills:]...)
			}
		}
	}
}

// parseKmsgRecord splits one /dev/kmsg record, "prio,seq,usec,flags[,...];message\n"
// followed by optional " KEY=value" lines, into its sequence number and message.
func parseKmsgRecord(rec []byte) (uint64, string, bool) {
	head, msg, ok := bytes.Cut(rec, []byte{';'})
	if !ok {
		return 0, "", false
	}
	fields := bytes.SplitN(head, []byte{','}, 3)
	if len(fields) < 3 {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, "", false
	}
	msg, _, _ = bytes.Cut(msg, []byte{'\n'})
	return seq, string(msg), true
}

// parseOOMRecord recognises the OOM killer's two lines about a kill.
func parseOOMRecord(msg string) (kmsgKill, bool) {
	if rest, ok := strings.CutPrefix(msg, "oom-kill:"); ok {
		var r kmsgKill
		for _, kv := range strings.Split(rest, ",") {
			key, val, _ := strings.Cut(kv, "=")
			switch key {
			case "task_memcg":
				r.memcg = val
			case "pid":
				r.pid, _ = strconv.Atoi(val)
			}
		}
		return r, r.memcg != ""
	}
	// "<message>: Killed process <pid> (<comm>) ...": the message is
	// "Memory cgroup out of memory" for a limit's kill, "Out of memory"
	// for the whole machine's, and the same line is printed for each
	// member of a memory.oom.group kill.
	if _, rest, ok := strings.Cut(msg, " of memory: Killed process "); ok {
		pid, _, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			return kmsgKill{}, false
		}
		return kmsgKill{pid: n}, true
	}
	return kmsgKill{}, false
}

// relMemcg is the path of the memory cgroup directory dir relative to its
// hierarchy's root, as the kernel prints it: "/a.slice/x.scope".
func relMemcg(dir string) string {
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if rel, ok := strings.CutPrefix(dir, root); ok && (rel == "" || rel[0] == '/') {
			if rel == "" {
				return "/"
			}
			return rel
		}
	}
	return dir
}
