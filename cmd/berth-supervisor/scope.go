package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// scopeTimeout bounds the talk with systemd at start.
const scopeTimeout = 30 * time.Second

// joinScope moves this process into the transient systemd scope unit name,
// in system.slice, made through systemd's D-Bus API: with the systemd
// cgroup driver systemd owns the cgroup tree, so a cgroup of our own made
// behind its back (joinCgroup) is not an option, and a scope is the unit a
// running process can be given. It takes us out of berthd's service, whose
// stop or restart would end us with it, and keeps us out of every pod
// slice. An in-place upgrade re-executes in the same process, already in
// the scope: nothing to do then.
func joinScope(name string) error {
	if inUnit(name) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), scopeTimeout)
	defer cancel()
	// systemd's private socket first: it needs no dbus-daemon (root only,
	// which the supervisor is); the system bus otherwise.
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		if conn, err = sddbus.NewWithContext(ctx); err != nil {
			return fmt.Errorf("connect to systemd: %w", err)
		}
	}
	defer conn.Close()
	pid := uint32(os.Getpid())
	err = startScope(ctx, conn, name, pid)
	if err == nil {
		return nil
	}
	// The unit may exist already: the supervisor of another state dir runs
	// in it, one that lost the start race to us is still in it, or a dead
	// one's scope is not collected yet.
	if aerr := conn.AttachProcessesToUnit(ctx, name, "", []uint32{pid}); aerr == nil {
		return nil
	}
	if rerr := conn.ResetFailedUnitContext(ctx, name); rerr == nil {
		if err = startScope(ctx, conn, name, pid); err == nil {
			return nil
		}
	}
	return err
}

// startScope asks systemd for scope name holding pid and waits for the
// job to finish.
func startScope(ctx context.Context, conn *sddbus.Conn, name string, pid uint32) error {
	props := []sddbus.Property{
		sddbus.PropDescription("berth supervisor: the parent of every berth container"),
		sddbus.PropSlice("system.slice"),
		sddbus.PropPids(pid),
		// systemd moves processes into a running unit (AttachProcesses-
		// ToUnit, for a second supervisor of another state dir, or one
		// that lost a start race) only when it is delegated.
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
	}
	done := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, name, "fail", props, done); err != nil {
		return fmt.Errorf("start transient unit %s: %w", name, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("start transient unit %s: job %s", name, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start transient unit %s: %w", name, ctx.Err())
	}
}

// inUnit reports whether this process's cgroup (v2) is the unit name's.
func inUnit(name string) bool {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			return bytes.HasSuffix(p, []byte("/"+name))
		}
	}
	return false
}
