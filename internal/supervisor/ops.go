package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/crilog"
	"github.com/berth-cri/berth/internal/logctx"
)

// create creates container id's init from req. gate, for OpCreateWhenReady
// (nil for OpCreate, whose bundle is complete), is called once the
// directory, record, stdio and log are made (and the spec read, if
// req.SpecWritten), before the runtime creates the init; its error undoes
// the preparation.
func (s *Server) create(ctx context.Context, id string, req *v1.CreateRequest, gate func() error) (*v1.State, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "create without parameters")
	}
	kind := req.Kind
	if kind == "" {
		kind = v1.RuntimeLibcontainer
	}
	rt, ok := s.rt[kind]
	if !ok {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "unknown runtime kind %q", kind)
	}
	if req.Restore != nil {
		if err := s.checkRestore(kind, req); err != nil {
			return nil, err
		}
	}
	root := req.RuntimeRoot
	if root == "" {
		root = filepath.Join(s.dir, "runtime", string(kind))
	}
	rec := record{
		ID: id, Bundle: req.Bundle, Kind: kind, RuntimePath: req.RuntimePath, RuntimeRoot: root,
		LogPath: req.LogPath, Stdin: req.Stdin, StdinOnce: req.StdinOnce, Terminal: req.Terminal,
		MaxLogLineSize: req.MaxLogLineSize, CreatedAt: time.Now().UnixNano(),
	}
	dir := s.containerDir(id)
	c := newContainer(dir, rec)
	c.op.Lock()
	defer c.op.Unlock()
	s.mu.Lock()
	if _, exists := s.containers[id]; exists {
		s.mu.Unlock()
		return nil, v1.Errorf(v1.CodeAlreadyExists, "container %q", id)
	}
	s.containers[id] = c
	s.mu.Unlock()

	// The log is opened before the init exists: one that cannot be
	// written fails the create with nothing to undo, and making the file
	// overlaps the client's work (OpCreateWhenReady). A failed create
	// removes the file it made.
	_, statErr := os.Lstat(rec.LogPath)
	log, err := crilog.Open(rec.LogPath)
	var pid int
	var pidfd *os.File
	if err == nil {
		if pid, pidfd, err = s.createInit(ctx, c, rt, &rec, gate == nil || req.SpecWritten, gate, req.Restore); err != nil {
			log.Close()
			if rec.LogPath != "" && errors.Is(statErr, fs.ErrNotExist) {
				os.Remove(rec.LogPath)
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		delete(s.containers, id)
		s.mu.Unlock()
		os.RemoveAll(dir)
		return nil, err
	}
	c.mu.Lock()
	rec.Pid = pid
	if req.Restore != nil {
		rec.StartedAt = time.Now().UnixNano() // restored running
	}
	c.rec = rec
	err = c.saveLocked()
	c.mu.Unlock()
	if err == nil {
		err = s.attach(ctx, c, pidfd, log)
	} else {
		pidfd.Close()
		log.Close()
	}
	if err != nil {
		// The init exists: kill it and let Delete clean up after its exit.
		rt.kill(ctx, &rec, int(unix.SIGKILL), true)
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	st := c.state()
	return &st, nil
}

// createInit prepares the directory and stdio and has the runtime create the
// init (or, with restore, restore the processes of a dump); on error it
// leaves nothing behind but the directory.
func (s *Server) createInit(ctx context.Context, c *container, rt runtime, rec *record, specWritten bool, gate func() error, restore *v1.RestoreRequest) (int, *os.File, error) {
	// A directory not in the table is a leftover of a create that failed
	// half-way during a crash.
	os.RemoveAll(c.dir)
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return 0, nil, fmt.Errorf("container dir: %w", err)
	}
	if err := atomicWriteRecord(c, rec); err != nil {
		return 0, nil, err
	}
	var io stdio
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	if !rec.Terminal {
		var err error
		if io, toClose, err = c.makeStdio(rec.Stdin); err != nil {
			return 0, nil, err
		}
	}
	// OpCreateWhenReady's client finishes the bundle while the above is
	// made: its spec is read before the gate only when already written.
	var spec *specs.Spec
	var err error
	if specWritten {
		if spec, err = readSpec(rec.Bundle); err != nil {
			return 0, nil, err
		}
	}
	if gate != nil {
		if err := gate(); err != nil {
			return 0, nil, err
		}
	}
	if spec == nil {
		if spec, err = readSpec(rec.Bundle); err != nil {
			return 0, nil, err
		}
	}
	if spec.Process != nil && spec.Process.Terminal != rec.Terminal {
		// The runtimes read the spec (runc refuses a terminal without a
		// console socket); the supervisor reads the request. They must agree.
		return 0, nil, v1.Errorf(v1.CodeInvalidArgument, "terminal is %v in the request but %v in the bundle's process", rec.Terminal, spec.Process.Terminal)
	}
	var pid int
	var console *os.File
	if restore != nil {
		pid, err = s.restoreInit(ctx, rt, rec, spec, io, restore)
	} else {
		pid, console, err = rt.create(ctx, rec, spec, io)
	}
	if err != nil {
		rt.delete(context.WithoutCancel(ctx), rec)
		return 0, nil, err
	}
	if console != nil {
		c.mu.Lock()
		c.console = console
		c.mu.Unlock()
	}
	st, err := startTime(pid)
	if err == nil {
		rec.PidStartTime = st
	}
	// Our unreaped child (or adopted orphan): its pid cannot be reused yet.
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		rt.kill(ctx, rec, int(unix.SIGKILL), true)
		rt.delete(context.WithoutCancel(ctx), rec)
		c.closeConsole()
		return 0, nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return pid, os.NewFile(uintptr(fd), "pidfd"), nil
}

// makeStdio creates the output FIFOs (and the stdin FIFO) of a container
// without a terminal and opens the ends its init gets; toClose are ours to
// close once the runtime passed them on.
func (c *container) makeStdio(withStdin bool) (io stdio, toClose []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range toClose {
				f.Close()
			}
			toClose = nil
		}
	}()
	for i, name := range fifoNames {
		if err := makeFifo(c.path(name)); err != nil {
			return io, toClose, err
		}
		f, err := openContainerEnd(c.path(name))
		if err != nil {
			return io, toClose, err
		}
		toClose = append(toClose, f)
		if i == 0 {
			io.stdout = f
		} else {
			io.stderr = f
		}
	}
	if withStdin {
		in, holder, err := openStdin(c.path("stdin"))
		if err != nil {
			return io, toClose, err
		}
		// The holder is reopened by attach; only the container's end is passed.
		holder.Close()
		io.stdin = in
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return io, toClose, err
		}
		io.stdin = null
	}
	toClose = append(toClose, io.stdin)
	return io, toClose, nil
}

func atomicWriteRecord(c *container, rec *record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec = *rec
	return c.saveLocked()
}

func (s *Server) start(ctx context.Context, id string) (*v1.State, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	st := c.state()
	if st.Status != v1.StatusCreated {
		return nil, v1.Errorf(v1.CodeFailedPrecondition, "container %q is %s, not created", id, st.Status)
	}
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	if err := s.rt[rec.Kind].start(ctx, &rec); err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	c.mu.Lock()
	c.rec.StartedAt = time.Now().UnixNano()
	err = c.saveLocked()
	c.mu.Unlock()
	if err != nil {
		logctx.G(ctx, s.log).WithError(err).Error("persisting start failed")
	}
	st = c.state()
	return &st, nil
}

// kill signals the container; killing a stopped container succeeds, as
// StopContainer must be idempotent (CRI api.proto).
func (s *Server) kill(ctx context.Context, id string, req *v1.KillRequest) error {
	if req == nil || req.Signal <= 0 || req.Signal > 64 {
		return v1.Errorf(v1.CodeInvalidArgument, "kill needs a signal number")
	}
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	rec, exited := c.rec, c.exit != nil
	c.mu.Unlock()
	if exited {
		return nil
	}
	if rec.Pid == 0 {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q is being created", id)
	}
	if err := s.rt[rec.Kind].kill(ctx, &rec, req.Signal, req.All); err != nil {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

func (s *Server) wait(ctx context.Context, id string) (*v1.State, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
		return nil, v1.Errorf(v1.CodeUnavailable, "wait for %s: %v", id, ctx.Err())
	}
	st := c.state()
	return &st, nil
}

// deleteKillTimeout bounds how long Delete of a created container waits for
// its killed init to be reaped.
const deleteKillTimeout = 10 * time.Second

// delete removes a stopped (or never started) container; an unknown id is
// not an error (RemoveContainer is idempotent, CRI api.proto).
func (s *Server) delete(ctx context.Context, id string) error {
	c, err := s.get(id)
	if err != nil {
		return nil
	}
	c.op.Lock()
	defer c.op.Unlock()
	st := c.state()
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	switch st.Status {
	case v1.StatusRunning:
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q is running", id)
	case v1.StatusCreated:
		if err := s.rt[rec.Kind].kill(ctx, &rec, int(unix.SIGKILL), true); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		select {
		case <-c.exited:
		case <-time.After(deleteKillTimeout):
			return v1.Errorf(v1.CodeUnavailable, "delete %s: init did not exit after SIGKILL", id)
		}
	}
	if err := s.rt[rec.Kind].delete(ctx, &rec); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	// Output readers may still run if a leftover process held the pipes.
	c.detach()
	c.closeConsole()
	// Before the directory goes: a keeper that misses this (we die now)
	// drops the hold itself when it finds the directory gone.
	s.dropHolds(c)
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	s.mu.Lock()
	if s.containers[id] == c {
		delete(s.containers, id)
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) reopenLog(id string) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	log := c.log
	c.mu.Unlock()
	if log == nil {
		return nil
	}
	if err := log.Reopen(); err != nil {
		return v1.Errorf(v1.CodeInternal, "reopen log of %s: %v", id, err)
	}
	return nil
}

func (s *Server) closeStdin(id string) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	err = c.closeStdin()
	s.keeper.Drop(c.path("stdin")) // or the container would never read its end
	return err
}

// closeStdin closes the container's stdin for good (stdin_once): without a
// terminal, the supervisor's hold on the stdin FIFO goes, so the container
// reads EOF once the attached writer is gone too; with one, the terminal gets
// its end-of-file character (console.go), once. It is persisted so that a
// restart does not hold stdin again.
func (c *container) closeStdin() error {
	c.mu.Lock()
	wasOpen := c.rec.Stdin && !c.rec.StdinClosed
	c.rec.StdinClosed = true
	err := c.saveLocked()
	w, console := c.stdinW, c.console
	c.stdinW = nil
	c.mu.Unlock()
	if w != nil {
		w.Close()
	}
	if wasOpen && console != nil {
		// Asynchronous: a container that does not read its terminal must
		// not block the caller; the write ends with the master at the latest.
		go sendEOF(console)
	}
	return err
}

func (s *Server) updateResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	if res == nil {
		return v1.Errorf(v1.CodeInvalidArgument, "update without resources")
	}
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	st := c.state()
	if st.Status != v1.StatusCreated && st.Status != v1.StatusRunning {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q is %s", id, st.Status)
	}
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	if err := s.rt[rec.Kind].update(ctx, &rec, res); err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}

func goroutines() int { return goruntime.NumGoroutine() }

// openFDs counts the process's open descriptors after a GC, so that
// descriptors only waiting for a finalizer (os.Process handles libcontainer
// drops) are not counted as leaks.
func openFDs() int {
	goruntime.GC()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries) - 1 // the directory's own descriptor
}
