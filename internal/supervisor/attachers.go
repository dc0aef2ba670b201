package supervisor

import (
	"bufio"
	"context"
	"encoding/binary"
	"github.com/berth-cri/berth/internal/pty"
	"io"
	"net"
	"os"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// attacherQueue is how many output chunks an attacher may lag behind before
// it is disconnected: the container and its log never wait for an attacher.
const attacherQueue = 256

// attachWriteTimeout bounds one frame write to a stalled attacher.
const attachWriteTimeout = 10 * time.Second

// attacher is one OpAttach connection. frames is closed (under c.mu) when the
// attacher is removed: by the output ending, by falling behind, or by the
// client hanging up.
type attacher struct {
	frames chan []byte
	// ended: removed because the output ended (guarded by the container's
	// mu); only then does the attacher get a FrameEnd.
	ended bool
}

// teeReader hands each chunk read from a container FIFO to the attachers
// before the log writer gets it.
type teeReader struct {
	r      io.Reader
	c      *container
	stream byte
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.c.broadcast(t.stream, p[:n])
	}
	return n, err
}

// broadcast queues a chunk to every attacher, dropping those whose queue is
// full.
func (c *container) broadcast(stream byte, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.attachers) == 0 {
		return
	}
	frame := make([]byte, v1.FrameHeaderSize+len(p))
	frame[0] = stream
	binary.BigEndian.PutUint32(frame[1:], uint32(len(p)))
	copy(frame[v1.FrameHeaderSize:], p)
	for a := range c.attachers {
		select {
		case a.frames <- frame:
		default:
			c.removeAttacherLocked(a)
		}
	}
}

func (c *container) removeAttacherLocked(a *attacher) {
	if _, ok := c.attachers[a]; ok {
		delete(c.attachers, a)
		close(a.frames)
	}
}

// endAttachers disconnects every attacher: the output ended.
func (c *container) endAttachers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a := range c.attachers {
		a.ended = true
		c.removeAttacherLocked(a)
	}
}

// serveAttach answers OpAttach: the container's state, then its output as
// frames until the output ends (or the client leaves, or falls behind),
// while the client's input frames go to the terminal (readInput).
func (s *Server) serveAttach(ctx context.Context, conn net.Conn, br *bufio.Reader, id string) {
	c, err := s.get(id)
	if err != nil {
		e := toAPIError(err)
		s.logResult(ctx, v1.OpAttach, e, 0)
		writeResponse(conn, &v1.Response{Error: e})
		return
	}
	a := &attacher{frames: make(chan []byte, attacherQueue)}
	c.mu.Lock()
	st := c.stateLocked()
	live := false
	if c.ioDone != nil {
		select {
		case <-c.ioDone:
		default:
			live = true
		}
	}
	if live {
		if c.attachers == nil {
			c.attachers = map[*attacher]struct{}{}
		}
		c.attachers[a] = struct{}{}
	}
	c.mu.Unlock()
	writeResponse(conn, &v1.Response{State: &st})
	end := make([]byte, v1.FrameHeaderSize) // FrameEnd, no payload
	if !live {
		conn.Write(end) // nothing more will be output
		return
	}
	go func() {
		// The client hanging up (or sending a bad frame) ends the attach.
		c.readInput(br)
		c.mu.Lock()
		c.removeAttacherLocked(a)
		c.mu.Unlock()
	}()
	for frame := range a.frames {
		conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
		if _, err := conn.Write(frame); err != nil {
			c.mu.Lock()
			c.removeAttacherLocked(a)
			c.mu.Unlock()
			for range a.frames {
			}
			return
		}
	}
	c.mu.Lock()
	ended := a.ended
	c.mu.Unlock()
	if ended {
		conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
		conn.Write(end)
	}
}

// readInput handles an attacher's input frames (api/supervisor/v1: stdin,
// resize, end of stdin) in order, until the connection ends or a frame is
// malformed. Writing stdin blocks while the terminal's input buffer is full:
// the attacher is slowed, never the container.
func (c *container) readInput(r io.Reader) {
	var hdr [v1.FrameHeaderSize]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > v1.MaxFramePayload {
			return
		}
		if uint32(cap(buf)) < n {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		switch hdr[0] {
		case v1.FrameStdin:
			if console := c.stdinConsole(); console != nil {
				// An error means the master closed: the output ended too.
				console.Write(p)
			}
		case v1.FrameResize:
			if n != v1.ResizePayloadSize {
				return
			}
			if console := c.terminal(); console != nil {
				pty.SetSize(console, binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]))
			}
		case v1.FrameStdinEnd:
			c.mu.Lock()
			once := c.rec.Terminal && c.rec.StdinOnce
			c.mu.Unlock()
			if once {
				c.closeStdin()
			}
		default:
			return
		}
	}
}

// terminal returns the pty master of a terminal container, nil if none.
func (c *container) terminal() *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.console
}

// stdinConsole returns the pty master if the container takes stdin through
// it: a terminal, created with stdin, not closed by stdin_once.
func (c *container) stdinConsole() *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.rec.Stdin || c.rec.StdinClosed {
		return nil
	}
	return c.console
}
