package exec

import (
	"context"
	"fmt"
	"github.com/berth-cri/berth/internal/pty"
	"io"
	"os"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Stream runs cmd with live stdio for the streaming server and returns its
// exit code once it ended and its output was delivered. in, out and errw may
// be nil. With tty, the process gets a pty (stderr goes to it too), and
// resize events are applied to it. When ctx ends (the client went away),
// the process tree is killed. out and errw are closed before returning.
func (e *Execer) Stream(ctx context.Context, t Target, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) (exitCode int, err error) {
	defer func() {
		if out != nil {
			out.Close()
		}
		if errw != nil {
			errw.Close()
		}
	}()
	var pio stdio
	var readers []*os.File  // our read ends, drained into out/errw
	var writers []io.Writer // where each reader goes
	var toClose []*os.File  // child ends, closed once started
	fail := func(err error) (int, error) {
		for _, f := range append(readers, toClose...) {
			f.Close()
		}
		return 0, err
	}
	var stdinW *os.File
	if !tty {
		if in != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("exec pipe: %w", err))
			}
			pio.stdin, stdinW = r, w
			toClose = append(toClose, r)
		}
		for _, s := range []struct {
			w    io.WriteCloser
			into **os.File
		}{{out, &pio.stdout}, {errw, &pio.stderr}} {
			if s.w == nil {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				if stdinW != nil {
					stdinW.Close()
				}
				return fail(fmt.Errorf("exec pipe: %w", err))
			}
			*s.into = w
			readers, writers = append(readers, r), append(writers, s.w)
			toClose = append(toClose, w)
		}
	}
	p, err := e.start(ctx, t, cmd, pio, tty)
	for _, f := range toClose {
		f.Close()
	}
	toClose = nil
	if err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		if n, ok := asNotRunnable(err); ok {
			// Tell the user why, as a shell would, then report the code.
			w := errw
			if w == nil {
				w = out
			}
			if w != nil {
				fmt.Fprintln(w, n.msg)
			}
			for _, r := range readers {
				r.Close()
			}
			return n.code, nil
		}
		return fail(err)
	}
	defer p.cleanup()

	done := make(chan struct{}) // closed when the process was reaped
	var stdinWriter *os.File
	if tty {
		readers, writers = []*os.File{p.console}, []io.Writer{io.Discard}
		if out != nil {
			writers[0] = out
		}
		stdinWriter = p.console
		if resize != nil {
			go applyResizes(p.console, resize, done, e)
		}
	} else {
		stdinWriter = stdinW
	}
	if in != nil && stdinWriter != nil {
		// This goroutine may outlive the call while blocked reading in: the
		// streaming server closes in when the connection ends, which frees it.
		go func() {
			copyStdin(stdinWriter, in)
			if !tty {
				stdinWriter.Close() // EOF for the process
			}
		}()
	}
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			copyOutput(writers[i], r)
		}()
	}
	ioDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(ioDone)
	}()

	exited := make(chan struct{})
	var code int
	var werr error
	go func() {
		code, werr = p.wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		p.kill()
		<-exited
	}
	close(done)
	select {
	case <-ioDone:
	case <-time.After(drainGrace):
	}
	now := time.Now()
	for _, r := range readers {
		r.SetReadDeadline(now)
	}
	<-ioDone
	for _, r := range readers {
		if r != p.console {
			r.Close()
		}
	}
	if p.console != nil {
		// Closing the master also ends a stdin copy blocked writing to it.
		p.console.Close()
	}
	if werr != nil {
		if n, ok := asNotRunnable(werr); ok {
			return n.code, nil
		}
		return code, werr
	}
	if ctx.Err() != nil {
		return code, fmt.Errorf("exec %q: %w", cmd, ctx.Err())
	}
	return code, nil
}

func applyResizes(console *os.File, resize <-chan remotecommand.TerminalSize, done <-chan struct{}, e *Execer) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-resize:
			if !ok {
				return
			}
			if err := pty.SetSize(console, sz.Height, sz.Width); err != nil {
				e.log.WithError(err).Debug("resize exec tty")
			}
		}
	}
}

// copyStdin copies until in ends or the process is gone (EPIPE/EIO).
func copyStdin(dst *os.File, in io.Reader) {
	io.Copy(dst, in)
}

// copyOutput copies r to w until EOF, EIO (a pty whose slave closed) or a
// read deadline; a failing w (the client left) is drained regardless, so the
// process never blocks on a full pipe.
func copyOutput(w io.Writer, r *os.File) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}
