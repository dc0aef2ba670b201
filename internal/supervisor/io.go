package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/crilog"
	"github.com/berth-cri/berth/internal/logctx"
)

// readBufSize is the buffer a stream reader borrows for one read.
const readBufSize = 32 * 1024

// readBufs lends read buffers: a reader holds one only while output is
// waiting, not while it waits for output, so idle containers (most of them,
// on most nodes) cost the supervisor no buffer.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// copyOutput copies what f yields, read through r (f itself or a wrapper),
// to w until EOF, an error or f's read deadline, and flushes w's pending
// partial line.
func copyOutput(w *crilog.StreamWriter, f *os.File, r io.Reader) error {
	defer w.Flush()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		// Park on the poller, without a buffer, until f is readable (data,
		// end of file or an error); a deadline ends the wait.
		if err := rc.Read(readable); err != nil {
			return err
		}
		buf := readBufs.Get().(*[]byte)
		n, err := r.Read(*buf)
		if n > 0 {
			w.Write((*buf)[:n])
		}
		readBufs.Put(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readable is a RawConn.Read callback: done once fd polls readable (or
// hung up), otherwise it asks the runtime to wait for readiness.
func readable(fd uintptr) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0
}

// attach opens what the supervisor holds for a live container (log file,
// unless log is already the open one, FIFO read ends and stdin holder, or
// the terminal's master) and starts its goroutines: one reader per output
// stream and the exit watcher. It takes ownership of pidfd and log. Each
// goroutine closes the files it owns when it returns.
func (s *Server) attach(ctx context.Context, c *container, pidfd *os.File, log *crilog.File) error {
	c.mu.Lock()
	rec, console := c.rec, c.console
	c.mu.Unlock()
	closePidfd := func() {
		if pidfd != nil {
			pidfd.Close()
		}
	}
	if log == nil {
		var err error
		if log, err = crilog.Open(rec.LogPath); err != nil {
			closePidfd()
			return err
		}
	}
	var readers []*os.File
	var stdinW *os.File
	if rec.Terminal {
		// One stream, logged as stdout (kubelet's convention for tty). No
		// master after a restart: it died with the killed supervisor
		// (console.go), and there is nothing left to read.
		if console != nil {
			console.SetReadDeadline(time.Time{}) // a failed upgrade stopped it
			readers = append(readers, console)
		}
	} else {
		for _, name := range fifoNames {
			f, err := openReader(c.path(name))
			if err != nil {
				for _, r := range readers {
					r.Close()
				}
				log.Close()
				closePidfd()
				return err
			}
			readers = append(readers, f)
		}
		if rec.Stdin && !rec.StdinClosed {
			// ENXIO means the container (the only reader) is gone: nothing to hold.
			stdinW, _ = openStdinHolder(c.path("stdin"))
		}
		// The keeper holds the FIFOs too, so that what the container writes
		// while no supervisor reads survives our death (also its own), and
		// its stdin stays open (no end of file) until CloseStdin.
		err := s.keeper.Hold(c.dir, readers)
		switch {
		case err == nil && stdinW != nil:
			err = s.keeper.Hold(c.path("stdin"), []*os.File{stdinW})
		case err == nil && rec.Stdin:
			// Closed (a CloseStdin whose drop a crash may have lost).
			err = s.keeper.Drop(c.path("stdin"))
		}
		if err != nil {
			logctx.G(ctx, s.log).WithError(err).WithField(logctx.ContainerField, rec.ID).Warn("the keeper cannot hold the container's stdio")
		}
	}
	ioDone, waitDone := make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	c.log, c.readers, c.pidfd, c.stdinW = log, readers, pidfd, stdinW
	c.ioDone, c.waitDone = ioDone, waitDone
	c.mu.Unlock()

	streams := [...]crilog.Stream{crilog.Stdout, crilog.Stderr}
	// Each reader reports whether it read to the end (no writer left: the
	// pipe will never yield anything more), not stopped by a detach.
	left := make(chan bool, len(readers))
	for i, f := range readers {
		w := crilog.NewStreamWriter(log, streams[i], rec.MaxLogLineSize)
		if rec.Terminal {
			w = crilog.NewTerminalWriter(log, rec.MaxLogLineSize)
		}
		go func() {
			var r io.Reader = f
			if rec.Terminal {
				r = ttyReader{f}
			}
			tee := &teeReader{r: r, c: c, stream: byte(i + 1)} // FrameStdout, FrameStderr
			err := copyOutput(w, f, tee)
			stopped := errors.Is(err, os.ErrDeadlineExceeded)
			defer func() { left <- err == nil }()
			if err != nil && !stopped {
				s.log.WithError(err).WithFields(logrus.Fields{logctx.ContainerField: rec.ID, "stream": streams[i]}).Error("reading container output")
			}
			switch {
			case !rec.Terminal:
				f.Close()
			case !stopped:
				// The terminal's output ended: nobody will use the master.
				c.closeConsole()
			}
			// A stopped terminal reader leaves the master open: an upgrade
			// hands it over (or a failed one attaches it again).
		}()
	}
	go func() {
		ended := true
		for range readers {
			ended = <-left && ended
		}
		if ended && !rec.Terminal {
			s.dropHolds(c)
		}
		// Output is complete (EOF) or handed over: the log file is done.
		log.Close()
		close(ioDone)
		c.endAttachers()
	}()
	go func() {
		defer closePidfd()
		s.watch(c, pidfd, waitDone)
	}()
	return nil
}

// dropHolds tells the keeper to let go of c's FIFOs: its output ended, or
// it is deleted.
func (s *Server) dropHolds(c *container) {
	s.keeper.Drop(c.dir)
	s.keeper.Drop(c.path("stdin"))
}

// closeConsole closes a terminal container's pty master, if still open.
func (c *container) closeConsole() {
	c.mu.Lock()
	console := c.console
	c.console = nil
	c.mu.Unlock()
	if console != nil {
		console.Close()
	}
}

// detach stops a container's goroutines without losing anything, for an
// upgrade: readers flush a pending partial line and leave unread bytes in the
// FIFO (or the pty, whose master stays open in c.console); the watcher leaves
// the exit unreaped for the next process.
func (c *container) detach() {
	c.mu.Lock()
	readers, pidfd, stdinW := c.readers, c.pidfd, c.stdinW
	ioDone, waitDone := c.ioDone, c.waitDone
	c.readers, c.pidfd, c.stdinW = nil, nil, nil
	c.mu.Unlock()
	now := time.Now()
	for _, f := range readers {
		f.SetReadDeadline(now)
	}
	if pidfd != nil {
		pidfd.SetReadDeadline(now)
	}
	if ioDone != nil {
		<-ioDone
	}
	if waitDone != nil {
		<-waitDone
	}
	if stdinW != nil {
		stdinW.Close()
	}
}
