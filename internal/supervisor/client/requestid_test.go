package client

import (
	"context"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/logctx"
)

// TestRequestIDSent: a call made for a CRI request carries its id to the
// supervisor (1.7), which logs its lines with it; a call without one (a
// background loop) sends none.
func TestRequestIDSent(t *testing.T) {
	stateDir := t.TempDir()
	seen := make(chan v1.Request, 1)
	fakeSupervisorSeeing(t, stateDir, true, seen)
	c := New(stateDir)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"for a request", logctx.WithField(context.Background(), logctx.RequestIDField, "r1"), "r1"},
		{"background", context.Background(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tc.ctx, 5*time.Second)
			defer cancel()
			if _, err := c.Version(ctx); err != nil {
				t.Fatal(err)
			}
			req := <-seen
			if req.RequestID != tc.want || req.Version != v1.Version {
				t.Errorf("sent request_id %q version %q, want %q %q", req.RequestID, req.Version, tc.want, v1.Version)
			}
		})
	}
}
