package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// pollInterval spaces the checks for a supervisor this client just started
// or upgraded: one caller, bounded by a deadline, waiting for a process
// that normally answers within milliseconds (not the shared backoff).
const pollInterval = 20 * time.Millisecond

// spawnTimeout bounds how long EnsureRunning waits for the supervisor it
// started to answer.
const spawnTimeout = 10 * time.Second

// Option tunes EnsureRunning.
type Option func(*spawnOptions)

type spawnOptions struct {
	cgroup string
	scope  string
}

// WithCgroup names the cgroup the supervisor moves into (below each
// hierarchy's root; default "berth-supervisor"; "" stays in the caller's).
func WithCgroup(name string) Option { return func(o *spawnOptions) { o.cgroup = name } }

// WithSystemdScope makes the supervisor run in the transient systemd
// scope unit name (in system.slice) instead of a cgroup of its own: with
// the systemd cgroup driver, systemd owns the tree, and a scope is how a
// process leaves berthd's service (whose stop or restart would take it
// along) for a unit of its own.
func WithSystemdScope(name string) Option {
	return func(o *spawnOptions) { o.scope, o.cgroup = name, "" }
}

// EnsureRunning returns a client for the supervisor of stateDir, starting
// binPath first if none answers. The supervisor is detached (own session,
// stdio to <stateDir>/supervisor/supervisor.log, or to the journal when
// berthd's stderr is one; its own cgroup or scope), so berthd
// may exit, crash or be restarted by systemd without touching it. Two
// callers racing here start at most one supervisor: the loser's process
// finds the lock taken and exits, and both clients reach the winner.
func EnsureRunning(ctx context.Context, binPath, stateDir string, opts ...Option) (*Client, error) {
	o := spawnOptions{cgroup: "berth-supervisor"}
	for _, opt := range opts {
		opt(&o)
	}
	c := New(stateDir)
	if c.answers(ctx) {
		return c, nil
	}
	dir := filepath.Join(stateDir, "supervisor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("supervisor dir: %w", err)
	}
	logf := os.Stderr
	if !stderrIsJournal() {
		// The supervisor rotates this file itself (it lives on a tmpfs).
		var err error
		if logf, err = os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, fmt.Errorf("supervisor log: %w", err)
		}
		defer logf.Close()
	}
	args := []string{"--state-dir", stateDir, "--cgroup", o.cgroup}
	if o.scope != "" {
		args = append(args, "--systemd-scope", o.scope)
	}
	cmd := exec.Command(binPath, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start supervisor %s: %w", binPath, err)
	}
	// Reap it should it ever exit while we run (it is our child until then).
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(ctx, spawnTimeout)
	defer cancel()
	for {
		if c.answers(ctx) {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("supervisor %s did not answer (see %s): %w", binPath, logf.Name(), errdefs.ErrUnavailable)
		case err := <-exited:
			// Lost a start race (lock held) or failed: keep polling, a
			// winner may be coming up; the deadline ends a real failure.
			exited = nil
			_ = err
		case <-time.After(pollInterval):
		}
	}
}

// answers reports whether a supervisor answers Version right now.
func (c *Client) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, _, err := c.once(ctx, ctx, &v1.Request{Version: v1.Version, Op: v1.OpVersion}, nil)
	return err == nil && resp.Error == nil
}

// Upgrade asks the supervisor to re-execute its binary (same path, same
// PID), and returns once the new one answers.
func (c *Client) Upgrade(ctx context.Context) (*v1.VersionInfo, error) {
	before, err := c.Version(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("supervisor upgrade: %w: %w", errdefs.ErrUnavailable, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	data, _ := json.Marshal(&v1.Request{Version: v1.Version, Op: v1.OpUpgrade})
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("supervisor upgrade: %w: %w", errdefs.ErrUnavailable, err)
	}
	r := bufio.NewReader(conn)
	var first v1.Response
	if err := readResponse(r, &first); err != nil {
		return nil, fmt.Errorf("supervisor upgrade: %w: %w", errdefs.ErrUnavailable, err)
	}
	if first.Error != nil {
		return nil, toErrdefs(&v1.Request{Op: v1.OpUpgrade}, first.Error)
	}
	// Success closes the connection (exec): EOF or a reset. Failure sends a
	// second answer. Either way the boot id below tells what happened.
	var second v1.Response
	if err := readResponse(r, &second); err == nil && second.Error != nil {
		return nil, toErrdefs(&v1.Request{Op: v1.OpUpgrade}, second.Error)
	}
	for {
		v, err := c.Version(ctx)
		if err != nil {
			return nil, err
		}
		if v.BootID != before.BootID {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("supervisor upgrade: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// stderrIsJournal reports whether berthd's stderr is systemd's journal
// stream (JOURNAL_STREAM names its device and inode, see systemd.exec(5)).
// The supervisor then logs there too: the journal bounds and rotates it,
// and the stream stays open while the supervisor holds it, across
// berthd's restarts.
func stderrIsJournal() bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(os.Getenv("JOURNAL_STREAM"), "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	return unix.Fstat(2, &st) == nil && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
