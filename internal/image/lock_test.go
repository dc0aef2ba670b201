package image

import (
	"context"
	"testing"
	"time"
)

// TestNoFsyncUnderServiceLock pins issue 17 item 10: a pull's record write
// (an fsync) ran under the service's lock, so on a stalled disk every
// CreateContainer (Use) and ImageStatus (Get) waited behind it. The write
// now runs outside it: readers answer while it stalls.
func TestNoFsyncUnderServiceLock(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "first:v1", randomImage(t, 1))
	reg.push(t, "second:v1", randomImage(t, 1))
	e := newTestEnv(t, reg, fixedPlatform)
	first := e.pull(t, reg.ref("first:v1"))

	stall, writing := make(chan struct{}), make(chan struct{}, 1)
	write := e.svc.ix.write
	e.svc.ix.write = func(p string, v any) error {
		select {
		case writing <- struct{}{}:
		default:
		}
		<-stall
		return write(p, v)
	}
	pulled := make(chan error, 1)
	go func() {
		_, err := e.svc.Pull(context.Background(), reg.ref("second:v1"), nil, "")
		pulled <- err
	}()
	select {
	case <-writing:
	case err := <-pulled:
		t.Fatalf("pull ended before its record write: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the pull never wrote its record")
	}

	answered := make(chan error, 1)
	go func() {
		if _, err := e.svc.Get(first.ID.String()); err != nil {
			answered <- err
			return
		}
		if _, err := e.svc.Use(first.ID.String(), "container:c1"); err != nil {
			answered <- err
			return
		}
		_, err := e.svc.List("")
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Get, Use and List wait for a stalled record write")
	}
	close(stall)
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(reg.ref("second:v1")); err != nil {
		t.Errorf("the pulled image after the write: %v", err)
	}
}
