// Package client is berthd's side of the supervisor protocol
// (api/supervisor/v1). Errors wrap internal/errdefs sentinels, so berthd's
// gRPC edge maps them like any other domain error.
//
// Every call opens its own connection. Calls survive a supervisor upgrade or
// restart: dialing is retried until the context ends (or ConnectWithin's
// bound), backing off exponentially to once a second, and calls that are safe
// to repeat (Version, State, List, Wait, Stats, Delete, Kill, ReopenLog) are
// sent again when the connection drops before an answer. Wait in particular
// can be left running across upgrades: the exit it returns was persisted by
// the supervisor before it was published, so none is ever missed.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
)

// Client talks to the supervisor of one state directory. It is safe for
// concurrent use and holds no connection between calls.
type Client struct {
	socket string
	retry  backoff
}

// New returns a client for the supervisor of stateDir, without checking that
// one runs (see EnsureRunning).
func New(stateDir string) *Client {
	return &Client{socket: filepath.Join(stateDir, "supervisor", "supervisor.sock")}
}

// idempotent operations may be sent again after a dropped connection.
var idempotent = map[v1.Op]bool{
	v1.OpVersion: true, v1.OpState: true, v1.OpList: true, v1.OpWait: true,
	v1.OpStats: true, v1.OpDelete: true, v1.OpKill: true, v1.OpReopenLog: true,
}

// call sends req and decodes the answer, retrying as described above until
// ctx ends.
func (c *Client) call(ctx context.Context, req *v1.Request) (*v1.Response, error) {
	return c.callWith(ctx, req, nil)
}

// callWith is call with a step between sending the request and reading
// the answer (OpCreateWhenReady's Proceed), run once the request is sent.
// Attempts are spaced by c.retry while the supervisor is away.
func (c *Client) callWith(ctx context.Context, req *v1.Request, between func(*net.UnixConn)) (*v1.Response, error) {
	req.Version = v1.Version
	req.RequestID = logctx.RequestID(ctx)
	connectCtx, stop := connectContext(ctx)
	defer stop()
	for {
		var resp *v1.Response
		var sent bool
		err := c.retry.wait(connectCtx)
		if err == nil {
			resp, sent, err = c.once(ctx, connectCtx, req, between)
		}
		if err == nil {
			c.retry.answered()
			return resp, nil
		}
		if connectCtx.Err() == nil && ctx.Err() == nil {
			c.retry.failed()
		}
		retry := !sent || idempotent[req.Op]
		if !retry || ctx.Err() != nil || (!sent && connectCtx.Err() != nil) {
			return nil, fmt.Errorf("supervisor %s %s: %w: %w", req.Op, req.ID, errdefs.ErrUnavailable, err)
		}
	}
}

// connectWithinKey holds the context that bounds connecting (ConnectWithin).
type connectWithinKey struct{}

// ConnectWithin returns ctx, whose calls give up connecting to the
// supervisor (errdefs.ErrUnavailable) once bound ends, though a call
// already sent runs to its answer under ctx. A create whose work outlives
// its caller (kubelet's retry takes its result) passes the caller's
// context as bound: nobody is left to wait for a supervisor that stays
// down, and the retry starts again.
func ConnectWithin(ctx, bound context.Context) context.Context {
	return context.WithValue(ctx, connectWithinKey{}, bound)
}

// connectContext is ctx, also ended by ConnectWithin's bound if set.
func connectContext(ctx context.Context) (context.Context, context.CancelFunc) {
	bound, _ := ctx.Value(connectWithinKey{}).(context.Context)
	if bound == nil {
		return ctx, func() {}
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(bound, func() { cancel(context.Cause(bound)) })
	return cctx, func() { stop(); cancel(nil) }
}

// once makes one attempt, connecting under connectCtx; sent reports
// whether the request may have reached the supervisor.
func (c *Client) once(ctx, connectCtx context.Context, req *v1.Request, between func(*net.UnixConn)) (*v1.Response, bool, error) {
	conn, err := c.dial(connectCtx)
	if err != nil {
		return nil, false, err
	}
	c.retry.connected()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	data, err := json.Marshal(req)
	if err != nil {
		return nil, false, err
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return nil, true, err
	}
	if between != nil {
		between(conn)
	}
	var resp v1.Response
	if err := readResponse(bufio.NewReader(conn), &resp); err != nil {
		return nil, true, err
	}
	return &resp, true, nil
}

func (c *Client) dial(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, err
	}
	return conn.(*net.UnixConn), nil
}

func readResponse(r *bufio.Reader, resp *v1.Response) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return json.Unmarshal(line, resp)
}

// do is call plus the mapping of a protocol error.
func (c *Client) do(ctx context.Context, req *v1.Request) (*v1.Response, error) {
	resp, err := c.call(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, toErrdefs(req, resp.Error)
	}
	return resp, nil
}

func toErrdefs(req *v1.Request, e *v1.Error) error {
	var sentinel error
	switch e.Code {
	case v1.CodeInvalidArgument:
		sentinel = errdefs.ErrInvalidArgument
	case v1.CodeNotFound:
		sentinel = errdefs.ErrNotFound
	case v1.CodeAlreadyExists:
		sentinel = errdefs.ErrAlreadyExists
	case v1.CodeFailedPrecondition, v1.CodeIncompatibleVersion:
		sentinel = errdefs.ErrFailedPrecondition
	case v1.CodeUnavailable:
		sentinel = errdefs.ErrUnavailable
	case v1.CodeUnimplemented:
		sentinel = errdefs.ErrUnimplemented
	default:
		return fmt.Errorf("supervisor %s %s: %s", req.Op, req.ID, e.Message)
	}
	return fmt.Errorf("supervisor %s %s: %s: %w", req.Op, req.ID, e.Message, sentinel)
}

// Version asks the supervisor who it is.
func (c *Client) Version(ctx context.Context) (*v1.VersionInfo, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpVersion})
	if err != nil {
		return nil, err
	}
	return resp.Version, nil
}

// Create creates container id from req; its init waits for Start.
func (c *Client) Create(ctx context.Context, id string, req v1.CreateRequest) (*v1.State, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpCreate, ID: id, Create: &req})
	if err != nil {
		return nil, err
	}
	return resp.State, nil
}

// CreateWhenReady is Create for a bundle still being made (ready finishes
// its rootfs, and writes its config.json unless req.SpecWritten): the
// supervisor makes the container's directory, record, stdio and log
// meanwhile, and creates the init once ready returned nil. An error from
// ready gives the create up (the supervisor keeps nothing) and is returned
// as it is. ready is called once the request is sent, so not at all when
// no supervisor could be reached.
func (c *Client) CreateWhenReady(ctx context.Context, id string, req v1.CreateRequest, ready func() error) (*v1.State, error) {
	var readyErr error
	proceed := func(conn *net.UnixConn) {
		readyErr = ready()
		p := v1.Proceed{OK: readyErr == nil}
		if readyErr != nil {
			p.Reason = readyErr.Error()
		}
		data, _ := json.Marshal(p)
		// A failed write is an answer already given (a supervisor before
		// 1.4) or a supervisor gone: the read that follows tells which.
		conn.Write(append(data, '\n'))
	}
	r := &v1.Request{Op: v1.OpCreateWhenReady, ID: id, Create: &req}
	resp, err := c.callWith(ctx, r, proceed)
	if readyErr != nil {
		return nil, readyErr
	}
	if err != nil {
		return nil, err
	}
	if resp.Error != nil && resp.Error.Code == v1.CodeUnimplemented {
		// A supervisor before 1.4 (one berthd could not upgrade) did
		// nothing; ready has returned nil.
		return c.Create(ctx, id, req)
	}
	if resp.Error != nil {
		return nil, toErrdefs(r, resp.Error)
	}
	return resp.State, nil
}

// Start runs the user process of a created container.
func (c *Client) Start(ctx context.Context, id string) (*v1.State, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpStart, ID: id})
	if err != nil {
		return nil, err
	}
	return resp.State, nil
}

// Kill signals the init (all=false) or every process of the container.
// Killing a stopped container succeeds.
func (c *Client) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpKill, ID: id, Kill: &v1.KillRequest{Signal: int(sig), All: all}})
	return err
}

// State describes one container; an unknown id is errdefs.ErrNotFound.
func (c *Client) State(ctx context.Context, id string) (*v1.State, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpState, ID: id})
	if err != nil {
		return nil, err
	}
	return resp.State, nil
}

// List describes every container the supervisor knows, stopped ones
// included (until Delete): berthd reconciles its store with it at start.
func (c *Client) List(ctx context.Context) ([]v1.State, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpList})
	if err != nil {
		return nil, err
	}
	return resp.List, nil
}

// Delete removes a stopped or created container; unknown ids succeed.
// A running container is errdefs.ErrFailedPrecondition.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpDelete, ID: id})
	return err
}

// Wait blocks until the container has stopped and returns its final state
// (State.Exit set). It keeps waiting across supervisor upgrades and
// restarts; it ends early only with ctx.
func (c *Client) Wait(ctx context.Context, id string) (*v1.State, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpWait, ID: id})
	if err != nil {
		return nil, err
	}
	return resp.State, nil
}

// ReopenLog reopens the container's log path after kubelet rotated it. On
// error the old file stays in use.
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpReopenLog, ID: id})
	return err
}

// CloseStdin drops the supervisor's hold on the stdin FIFO, so the container
// reads EOF once the attached writer is gone (stdin_once).
func (c *Client) CloseStdin(ctx context.Context, id string) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpCloseStdin, ID: id})
	return err
}

// UpdateResources applies new linux resources to a created or running
// container.
func (c *Client) UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpUpdateResources, ID: id, Update: res})
	return err
}

// Stats reports the supervisor's container, goroutine and descriptor counts.
func (c *Client) Stats(ctx context.Context) (*v1.Stats, error) {
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpStats})
	if err != nil {
		return nil, err
	}
	return resp.Stats, nil
}
