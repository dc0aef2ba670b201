package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/logctx"
)

// drainGrace bounds how long output is read after the exec'd process ended:
// a background child it left behind may hold the pipes open for ever.
const drainGrace = time.Second

// Sync runs cmd in the container and returns its output and exit code.
// timeout 0 means no limit (lifecycle hooks send 0). On timeout, or when ctx
// ends, the whole exec'd process tree is killed and the error wraps
// context.DeadlineExceeded (or ctx's error). stdout and stderr together are
// capped at maxOutput bytes (0: DefaultMaxOutput); the rest is read and
// discarded so a chatty command never blocks on a full pipe. A command that
// cannot be executed is exit code 127 (not found) or 126 (not executable)
// with the runtime's message as stderr, not an error. A stopped container is
// errdefs.ErrFailedPrecondition, an unknown one errdefs.ErrNotFound.
func (e *Execer) Sync(ctx context.Context, t Target, cmd []string, timeout time.Duration, maxOutput int) (stdout, stderr []byte, exitCode int32, err error) {
	if maxOutput <= 0 {
		maxOutput = DefaultMaxOutput
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("exec pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, 0, fmt.Errorf("exec pipe: %w", err)
	}
	p, err := e.start(ctx, t, cmd, stdio{stdout: outW, stderr: errW}, false)
	// The child has its copies; ours must go for the readers to see EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if n, ok := asNotRunnable(err); ok {
			return nil, []byte(n.msg), int32(n.code), nil
		}
		return nil, nil, 0, err
	}
	defer p.cleanup()

	out := &capped{left: maxOutput}
	ioDone := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range []struct {
		f   *os.File
		buf *[]byte
	}{{outR, &stdout}, {errR, &stderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.copy(r.buf, r.f)
		}()
	}
	go func() {
		wg.Wait()
		close(ioDone)
	}()

	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	type result struct {
		code int
		err  error
	}
	exited := make(chan result, 1)
	go func() {
		code, err := p.wait()
		exited <- result{code, err}
	}()
	var res result
	var waitErr error
	select {
	case res = <-exited:
	case <-waitCtx.Done():
		p.kill()
		res = <-exited
		waitErr = waitCtx.Err()
	}
	select {
	case <-ioDone:
	case <-time.After(drainGrace):
		logctx.G(ctx, e.log).WithField("id", t.ID).Debug("exec left a process holding its output; not waiting for it")
	}
	// Stop readers still blocked (a leftover child holding the pipes).
	now := time.Now()
	outR.SetReadDeadline(now)
	errR.SetReadDeadline(now)
	<-ioDone
	// A reader the deadline stopped may not have had its turn yet (a
	// loaded node): what the process wrote before it ended is in the pipe
	// all the same, and must not be lost. Take it without waiting.
	out.drainReady(&stdout, outR)
	out.drainReady(&stderr, errR)
	outR.Close()
	errR.Close()

	out.mu.Lock()
	defer out.mu.Unlock()
	if waitErr != nil {
		if errors.Is(waitErr, context.DeadlineExceeded) && ctx.Err() == nil {
			return stdout, stderr, int32(res.code), fmt.Errorf("command %q timed out after %s: %w", cmd, timeout, waitErr)
		}
		return stdout, stderr, int32(res.code), fmt.Errorf("command %q: %w", cmd, waitErr)
	}
	if res.err != nil {
		if n, ok := asNotRunnable(res.err); ok {
			return nil, []byte(n.msg), int32(n.code), nil
		}
		return nil, nil, 0, res.err
	}
	return stdout, stderr, int32(res.code), nil
}

// capped collects output up to a budget shared by both streams.
type capped struct {
	mu   sync.Mutex // guards left and the buffers copy appends to
	left int
}

// copy appends what r yields to *dst while budget is left, and discards the
// rest, until EOF or an error (a read deadline).
func (c *capped) copy(dst *[]byte, r io.Reader) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.mu.Lock()
			keep := min(n, c.left)
			*dst = append(*dst, buf[:keep]...)
			c.left -= keep
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// drainReady appends what f holds right now to *dst, within the budget,
// without waiting for more. f's read deadline is cleared: the raw reads
// below never block on a non-blocking pipe, and a deadline would refuse
// them.
func (c *capped) drainReady(dst *[]byte, f *os.File) {
	f.SetReadDeadline(time.Time{})
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 32*1024)
	for {
		n := 0
		rerr := rc.Read(func(fd uintptr) bool {
			n, err = unix.Read(int(fd), buf)
			return true // never wait for readiness
		})
		if rerr != nil || err != nil || n <= 0 {
			return
		}
		c.mu.Lock()
		keep := min(n, c.left)
		*dst = append(*dst, buf[:keep]...)
		c.left -= keep
		c.mu.Unlock()
	}
}
