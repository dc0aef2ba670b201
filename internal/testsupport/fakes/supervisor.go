package fakes

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Supervisor runs no process: a started container "runs" as the test
// process itself (its pid and start time are real, so the managers' pause
// checks hold) until Kill or Exit stops it.
type Supervisor struct {
	R *Recorder
	// ExitAtStart makes Start report the container already exited with
	// this code (a /bin/true), when set for its id.
	ExitAtStart map[string]int32
	// Pid, if set, is the pid a started container reports (one that does
	// not exist: a process that ended as it started).
	Pid int

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	st   supv1.State
	done chan struct{} // closed once stopped
}

func (f *Supervisor) get(id string) (*proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.procs[id]
	if !ok {
		return nil, fmt.Errorf("supervisor: container %s: %w", id, errdefs.ErrNotFound)
	}
	return p, nil
}

// Has reports whether the supervisor knows id.
func (f *Supervisor) Has(id string) bool {
	_, err := f.get(id)
	return err == nil
}

// Status is the status of id, "" if unknown.
func (f *Supervisor) Status(id string) supv1.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.procs[id]; ok {
		return p.st.Status
	}
	return ""
}

// Put makes the supervisor know id in status (what it kept across a
// berthd restart).
func (f *Supervisor) Put(id string, status supv1.Status, exitCode int32) {
	p := &proc{st: supv1.State{ID: id, Status: supv1.StatusCreated}, done: make(chan struct{})}
	f.mu.Lock()
	if f.procs == nil {
		f.procs = map[string]*proc{}
	}
	f.procs[id] = p
	f.mu.Unlock()
	switch status {
	case supv1.StatusRunning:
		f.run(p)
	case supv1.StatusStopped:
		f.run(p)
		f.stop(p, exitCode, "Completed")
	}
}

func (f *Supervisor) run(p *proc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pid := os.Getpid()
	if f.Pid != 0 {
		pid = f.Pid
	}
	p.st.Status, p.st.Pid, p.st.StartedAt = supv1.StatusRunning, pid, time.Now().UnixNano()
}

func (f *Supervisor) stop(p *proc, code int32, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.st.Status == supv1.StatusStopped {
		return
	}
	p.st.Status = supv1.StatusStopped
	p.st.Exit = &supv1.ExitStatus{ExitCode: code, Reason: reason, FinishedAt: time.Now().UnixNano()}
	close(p.done)
}

func (f *Supervisor) state(p *proc) *supv1.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := p.st
	return &st
}

// Drop makes the supervisor forget id (it lost its state).
func (f *Supervisor) Drop(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.procs, id)
}

// Exit makes a running container id exit with code.
func (f *Supervisor) Exit(id string, code int32) {
	if p, err := f.get(id); err == nil {
		f.stop(p, code, "Error")
	}
}

// lookup logs the call name on id (and args) and finds id.
func (f *Supervisor) lookup(name, id string, args ...any) (*proc, error) {
	if err := f.R.Call(name, append([]any{id}, args...)...); err != nil {
		return nil, err
	}
	return f.get(id)
}

// make logs the call name and makes id in status.
func (f *Supervisor) make(name, id string, status supv1.Status) (*supv1.State, error) {
	if err := f.R.Call(name, id); err != nil {
		return nil, err
	}
	f.Put(id, status, 0)
	p, _ := f.get(id)
	return f.state(p), nil
}

func (f *Supervisor) Create(ctx context.Context, id string, req supv1.CreateRequest) (*supv1.State, error) {
	return f.make("Supervisor.Create", id, supv1.StatusCreated)
}

// CreateWhenReady calls ready as the real client does once the request is
// sent: a failed Supervisor.CreateWhenReady is a supervisor that could not
// be reached (ready is not called), a failed Supervisor.Create one that
// failed the create after ready succeeded.
func (f *Supervisor) CreateWhenReady(ctx context.Context, id string, req supv1.CreateRequest, ready func() error) (*supv1.State, error) {
	if err := f.R.Call("Supervisor.CreateWhenReady", id); err != nil {
		return nil, err
	}
	if err := ready(); err != nil {
		return nil, err
	}
	return f.Create(ctx, id, req)
}

func (f *Supervisor) Start(ctx context.Context, id string) (*supv1.State, error) {
	p, err := f.lookup("Supervisor.Start", id)
	if err != nil {
		return nil, err
	}
	f.run(p)
	if code, ok := f.ExitAtStart[id]; ok {
		f.stop(p, code, "Completed")
	}
	return f.state(p), nil
}

func (f *Supervisor) Restore(ctx context.Context, id string, req supv1.CreateRequest) (*supv1.State, error) {
	return f.make("Supervisor.Restore", id, supv1.StatusRunning)
}

func (f *Supervisor) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	p, err := f.lookup("Supervisor.Kill", id, int(sig))
	if err != nil {
		return err
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		f.stop(p, 128+int32(sig), "Error")
	}
	return nil
}

func (f *Supervisor) State(ctx context.Context, id string) (*supv1.State, error) {
	p, err := f.lookup("Supervisor.State", id)
	if err != nil {
		return nil, err
	}
	return f.state(p), nil
}

func (f *Supervisor) Wait(ctx context.Context, id string) (*supv1.State, error) {
	p, err := f.lookup("Supervisor.Wait", id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return f.state(p), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WaitExit waits as the real one, polling wanted, without logging a call
// (the watches run in the background; their calls would make the call
// log depend on timing).
func (f *Supervisor) WaitExit(id string, wanted func() bool, retrying func(error)) (*supv1.State, error) {
	for {
		p, err := f.get(id)
		if err != nil {
			return nil, err
		}
		select {
		case <-p.done:
			return f.state(p), nil
		case <-time.After(5 * time.Millisecond):
		}
		if !wanted() {
			return nil, nil
		}
	}
}

func (f *Supervisor) Delete(ctx context.Context, id string) error {
	if err := f.R.Call("Supervisor.Delete", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.procs[id]; ok && p.st.Status == supv1.StatusRunning {
		return fmt.Errorf("supervisor: container %s is running: %w", id, errdefs.ErrFailedPrecondition)
	}
	delete(f.procs, id)
	return nil
}

func (f *Supervisor) ReopenLog(ctx context.Context, id string) error {
	return f.R.Call("Supervisor.ReopenLog", id)
}

func (f *Supervisor) UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	return f.R.Call("Supervisor.UpdateResources", id)
}

func (f *Supervisor) Checkpoint(ctx context.Context, id string, req supv1.CheckpointRequest) error {
	return f.R.Call("Supervisor.Checkpoint", id)
}

func (f *Supervisor) Pause(ctx context.Context, id string, pause bool) error {
	return f.R.Call("Supervisor.Pause", id, pause)
}
