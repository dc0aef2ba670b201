package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
)

// Attachment is a live view of a container's output (OpAttach). For a
// container without a terminal, stdin is not carried by it: write to
// State.StdinPath, a FIFO the container reads. For a terminal container
// (State.Terminal), stdin and resizes go through the Attachment: Write,
// Resize and CloseStdin, which may be called concurrently with each other and
// with Copy.
type Attachment struct {
	// State is the container's state when the attach began.
	State *v1.State
	conn  net.Conn
	r     *bufio.Reader

	wmu sync.Mutex // serialises input frames
}

// Attach connects to the live output of container id. Output the container
// wrote before the call is not replayed (it is in the log). The Attachment
// must be closed. An attach is not retried across supervisor restarts.
func (c *Client) Attach(ctx context.Context, id string) (*Attachment, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("supervisor attach %s: %w: %w", id, errdefs.ErrUnavailable, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	req := &v1.Request{Version: v1.Version, Op: v1.OpAttach, ID: id, RequestID: logctx.RequestID(ctx)}
	data, _ := json.Marshal(req)
	r := bufio.NewReader(conn)
	var resp v1.Response
	if _, err = conn.Write(append(data, '\n')); err == nil {
		err = readResponse(r, &resp)
	}
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("supervisor attach %s: %w: %w", id, errdefs.ErrUnavailable, err)
	}
	if resp.Error != nil {
		conn.Close()
		// A 1.0 supervisor answers CodeUnimplemented (unknown operation).
		return nil, toErrdefs(req, resp.Error)
	}
	return &Attachment{State: resp.State, conn: conn, r: r}, nil
}

// Copy writes the container's output to stdout and stderr (nil discards)
// until the output ends (nil: the container's processes are gone), the
// supervisor drops this attachment for falling behind (an error wrapping
// errdefs.ErrUnavailable), a writer fails, or Close is called.
func (a *Attachment) Copy(stdout, stderr io.Writer) error {
	var hdr [v1.FrameHeaderSize]byte
	buf := make([]byte, v1.MaxFramePayload)
	for {
		if _, err := io.ReadFull(a.r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("attach %s: dropped by the supervisor (reader too slow, or supervisor gone): %w", a.State.ID, errdefs.ErrUnavailable)
			}
			return fmt.Errorf("attach %s: %w", a.State.ID, err)
		}
		if hdr[0] == v1.FrameEnd {
			return nil
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > v1.MaxFramePayload {
			return fmt.Errorf("attach %s: frame of %d bytes", a.State.ID, n)
		}
		if _, err := io.ReadFull(a.r, buf[:n]); err != nil {
			return fmt.Errorf("attach %s: %w", a.State.ID, err)
		}
		w := stdout
		if hdr[0] == v1.FrameStderr {
			w = stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("attach %s: write output: %w", a.State.ID, err)
		}
	}
}

// Close detaches; a Copy in progress returns. Closing is not the end of
// stdin (CloseStdin is).
func (a *Attachment) Close() error { return a.conn.Close() }

// Write sends p to a terminal container's stdin (FrameStdin frames). The
// supervisor ignores it unless the container has a terminal and an open
// stdin. It blocks while the container does not read its terminal.
func (a *Attachment) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), v1.MaxFramePayload)]
		if err := a.sendFrame(v1.FrameStdin, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// Resize sets a terminal container's window size (FrameResize).
func (a *Attachment) Resize(rows, cols uint16) error {
	var p [v1.ResizePayloadSize]byte
	binary.BigEndian.PutUint16(p[:], rows)
	binary.BigEndian.PutUint16(p[2:], cols)
	return a.sendFrame(v1.FrameResize, p[:])
}

// CloseStdin says that this attacher's stdin ended (FrameStdinEnd): a
// terminal container created with stdin_once then has its stdin closed for
// good, after everything written before.
func (a *Attachment) CloseStdin() error { return a.sendFrame(v1.FrameStdinEnd, nil) }

func (a *Attachment) sendFrame(kind byte, p []byte) error {
	frame := make([]byte, v1.FrameHeaderSize+len(p))
	frame[0] = kind
	binary.BigEndian.PutUint32(frame[1:], uint32(len(p)))
	copy(frame[v1.FrameHeaderSize:], p)
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if _, err := a.conn.Write(frame); err != nil {
		return fmt.Errorf("attach %s: send: %w", a.State.ID, err)
	}
	return nil
}
