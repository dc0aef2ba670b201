package client

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Checkpoint has the supervisor dump running container id with CRIU into
// req.ImagesDir, leaving it running (protocol 1.6). A supervisor before
// 1.6 answers with an error wrapping errdefs.ErrUnimplemented that says so.
func (c *Client) Checkpoint(ctx context.Context, id string, req v1.CheckpointRequest) error {
	_, err := c.do(ctx, &v1.Request{Op: v1.OpCheckpoint, ID: id, Checkpoint: &req})
	return olderThan16(err)
}

// Restore creates container id from req, whose Restore names the dump its
// processes come from, and starts it: the State returned is running (or
// already stopped).
func (c *Client) Restore(ctx context.Context, id string, req v1.CreateRequest) (*v1.State, error) {
	if req.Restore == nil {
		return nil, fmt.Errorf("restore without a dump: %w", errdefs.ErrInvalidArgument)
	}
	resp, err := c.do(ctx, &v1.Request{Op: v1.OpRestore, ID: id, Create: &req})
	if err != nil {
		return nil, olderThan16(err)
	}
	return resp.State, nil
}

// Pause freezes running container id (resume false: thaws it; thawing a
// container that is not frozen succeeds).
func (c *Client) Pause(ctx context.Context, id string, pause bool) error {
	op := v1.OpPause
	if !pause {
		op = v1.OpResume
	}
	_, err := c.do(ctx, &v1.Request{Op: op, ID: id})
	return olderThan16(err)
}

// olderThan16 explains an Unimplemented answer: only a supervisor that
// does not know the operation gives it (one berthd could not upgrade).
func olderThan16(err error) error {
	if errors.Is(err, errdefs.ErrUnimplemented) {
		return fmt.Errorf("the running supervisor predates checkpoint/restore (protocol 1.6; restart it to upgrade): %w", err)
	}
	return err
}
