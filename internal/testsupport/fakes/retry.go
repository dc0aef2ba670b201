package fakes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

// RetryCase is a create for CheckRetriedCreate, made on fresh fakes.
type RetryCase[T any] struct {
	Rec     *Recorder
	Records *Records[T]
	// Create makes the object, the same name each time.
	Create func(context.Context) (string, error)
	// Step starts the one call the create makes once ("Supervisor.Create
	// "): kubelet's deadline passes during it.
	Step string
	// Settled reports a created object; Delivered its delivered flag.
	Settled, Delivered func(*T) bool
}

// CheckRetriedCreate pins the name reservation: kubelet gives up on a slow
// create and retries with the same name. The retry gets the first create's
// object (joining it while it runs, or finding it undelivered once done)
// and marks it delivered; a create of a name a client already got is
// AlreadyExists.
func CheckRetriedCreate[T any](t *testing.T, setup func(t *testing.T) RetryCase[T]) {
	for _, joined := range []bool{false, true} {
		t.Run(fmt.Sprintf("joined=%v", joined), func(t *testing.T) {
			c := setup(t)
			first, cancel := context.WithCancel(context.Background())
			release := make(chan struct{})
			c.Rec.OnCall = func(call string) {
				if strings.HasPrefix(call, c.Step) {
					cancel()
					if joined {
						<-release
					}
				}
			}
			if id, err := c.Create(first); !errors.Is(err, context.Canceled) {
				t.Fatalf("first create = %q, %v; want it cancelled", id, err)
			}
			if !joined {
				id, ok := c.Records.WaitOne(c.Settled)
				if !ok {
					t.Fatalf("records %v, want one created", c.Records.IDs())
				}
				if c.Delivered(c.Records.Get(id)) {
					t.Fatal("a create whose client gave up is recorded as delivered")
				}
			}
			done := make(chan error, 1)
			var retried string
			go func() {
				var err error
				retried, err = c.Create(context.Background())
				done <- err
			}()
			if joined {
				time.Sleep(20 * time.Millisecond) // let the retry join; it is correct either way
				close(release)
			}
			if err := <-done; err != nil {
				t.Fatalf("retry: %v", err)
			}
			if ids := c.Records.IDs(); len(ids) != 1 || ids[0] != retried {
				t.Fatalf("retry got %q, records %v: want the first create's", retried, ids)
			}
			if n := c.Rec.Count(c.Step); n != 1 {
				t.Errorf("%d calls %q, want 1", n, c.Step)
			}
			if !c.Delivered(c.Records.Get(retried)) {
				t.Error("the retry's answer not recorded as delivered")
			}
			if _, err := c.Create(context.Background()); !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Errorf("a create of a delivered name: %v, want AlreadyExists", err)
			}
		})
	}
}

// CheckFailedRollbackKept checks a create whose rollback failed too
// (the failures injected by the caller): create returns want, and the
// record stays, still creating (creating accepts it) and hidden (listed
// counts what the manager lists), for recovery to roll back.
func CheckFailedRollbackKept[T any](t *testing.T, recs *Records[T], want error, create func() error, creating func(*T) bool, listed func() int) {
	t.Helper()
	if err := create(); !errors.Is(err, want) {
		t.Fatalf("create: %v, want %v", err, want)
	}
	if _, ok := recs.WaitOne(creating); !ok {
		t.Fatalf("records %v, want the creating one kept", recs.IDs())
	}
	if n := listed(); n != 0 {
		t.Errorf("%d listed while being rolled back", n)
	}
}
