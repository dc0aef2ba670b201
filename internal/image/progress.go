package image

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// minProgress is the least data that counts as progress. A registry that
// trickles a byte a second (a slow loris) would otherwise hold a pull, and
// a download slot, for as many seconds as the layer has bytes: less than
// this in a whole timeout window (55 B/s at the 5 min default) is a stall.
const minProgress = 16 << 10

// stallWatch cancels a context when less than minProgress bytes have moved
// for timeout (image_pull_progress_timeout): a registry that stops sending,
// or nearly, mid-layer must not hold a pull, and a download slot, forever.
// It uses one timer, re-armed for the remaining time when it fires early,
// so reads stay cheap.
type stallWatch struct {
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the last progress
	pending atomic.Int64 // bytes read since then
	timer   *time.Timer
	cancel  context.CancelCauseFunc
}

// watchStall returns a context cancelled with a "no progress" cause when
// the returned watch is not touched for timeout. stop releases the timer.
// A timeout <= 0 disables the watch.
func watchStall(ctx context.Context, timeout time.Duration, what string) (context.Context, *stallWatch, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{timeout: timeout, cancel: cancel}
	w.touch()
	if timeout > 0 {
		w.timer = time.AfterFunc(timeout, func() { w.check(what) })
	}
	return ctx, w, func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		cancel(nil)
	}
}

func (w *stallWatch) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *stallWatch) check(what string) {
	idle := time.Since(time.Unix(0, w.last.Load()))
	if idle >= w.timeout {
		w.cancel(fmt.Errorf("%s: less than %d bytes received in %s (image_pull_progress_timeout): cancelled", what, minProgress, w.timeout))
		return
	}
	w.timer.Reset(w.timeout - idle)
}

// reader counts progress each time reads have returned minProgress bytes.
func (w *stallWatch) reader(r io.Reader) io.Reader { return &stallReader{r: r, w: w} }

type stallReader struct {
	r io.Reader
	w *stallWatch
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 && s.w.pending.Add(int64(n)) >= minProgress {
		s.w.pending.Store(0)
		s.w.touch()
	}
	return n, err
}
