package client

import (
	"context"
	"errors"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// WaitExit waits for container id to stop, for as long as wanted holds:
// berthd's watch of every container and pause. The supervisor persisted the
// exit before answering, and Wait is re-sent across supervisor restarts and
// upgrades, then after any other error once a second (retrying is told each
// such error), so no exit is lost while berthd runs. It returns the stopped
// state; an error wrapping errdefs.ErrNotFound when the supervisor does not
// know id (it lost track of it); nil, nil once wanted returned false.
func (c *Client) WaitExit(id string, wanted func() bool, retrying func(error)) (*v1.State, error) {
	for {
		st, err := c.Wait(context.Background(), id)
		if err == nil && st.Status == v1.StatusStopped {
			return st, nil
		}
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, err
		}
		if !wanted() {
			return nil, nil
		}
		if err != nil && retrying != nil {
			retrying(err)
		}
		time.Sleep(time.Second)
	}
}
