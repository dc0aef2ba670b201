package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/runtimecli"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// ociRuntime drives a runc-compatible binary. `create` passes the init our
// stdio and exits; the init, orphaned, is reparented to the supervisor (a
// child subreaper), which waits for it like a libcontainer child.
type ociRuntime struct {
	// dir returns the container's directory (for the pid file and log).
	dir func(id string) string
}

// ociTimeout bounds one runtime invocation; a hung runtime must not hang the
// supervisor's caller forever.
const ociTimeout = 60 * time.Second

func (r ociRuntime) command(ctx context.Context, rec *record, args ...string) *exec.Cmd {
	logFile := filepath.Join(r.dir(rec.ID), "runtime.log")
	full := append([]string{"--root", rec.RuntimeRoot, "--log", logFile, "--log-format", "json"}, args...)
	return exec.CommandContext(ctx, rec.RuntimePath, full...)
}

// run runs the runtime and returns an error carrying its last log error.
func (r ociRuntime) run(ctx context.Context, rec *record, io *stdio, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ociTimeout)
	defer cancel()
	cmd := r.command(ctx, rec, args...)
	var out, errb bytes.Buffer
	if io != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = io.stdin, io.stdout, io.stderr
	} else {
		cmd.Stdout, cmd.Stderr = &out, &errb
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if m := r.lastLogError(rec.ID); m != "" {
			msg = m
		}
		return nil, fmt.Errorf("%s %s %s: %w: %s", rec.RuntimePath, args[0], rec.ID, err, msg)
	}
	return out.Bytes(), nil
}

// lastLogError returns the last error-level message of the runtime's json log.
func (r ociRuntime) lastLogError(id string) string {
	return runtimecli.LastLogError(filepath.Join(r.dir(id), "runtime.log"))
}

func (r ociRuntime) create(ctx context.Context, rec *record, spec *specs.Spec, io stdio) (int, *os.File, error) {
	if rec.RuntimePath == "" {
		return 0, nil, v1.Errorf(v1.CodeInvalidArgument, "runtime kind oci needs runtime_path")
	}
	pidFile := filepath.Join(r.dir(rec.ID), "init.pid")
	args := []string{"create", "--bundle", rec.Bundle, "--pid-file", pidFile}
	if systemdCgroup(spec) {
		// runc's (and crun's) global flag for a slice:prefix:name path. Only
		// create needs it: the runtime keeps the choice in its state, which
		// every later command of the container reads.
		args = append([]string{"--systemd-cgroup"}, args...)
	}
	stdio := &io
	var cl *consoleListener
	if rec.Terminal {
		// The runtime connects to this socket and sends the pty master its
		// init allocated; the runtime's own stdio is not the container's.
		var err error
		if cl, err = listenConsole(); err != nil {
			return 0, nil, err
		}
		defer cl.close()
		args = append(args, "--console-socket", cl.path())
		stdio = nil
	}
	if _, err := r.run(ctx, rec, stdio, append(args, rec.ID)...); err != nil {
		return 0, nil, err
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, nil, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, nil, fmt.Errorf("bad pid file %q", data)
	}
	var console *os.File
	if cl != nil {
		// The runtime's create returned, so the master is already queued.
		if console, err = cl.receive(); err != nil {
			// Our caller kills and deletes what the runtime made.
			return 0, nil, err
		}
	}
	if spec.Linux != nil {
		if dir, err := cgroupdriver.Dir(spec.Linux.CgroupsPath); err == nil {
			if cgroups.IsCgroup2UnifiedMode() {
				rec.MemoryCgroup = filepath.Join(cgroupMount, dir)
			} else {
				rec.MemoryCgroup = filepath.Join(cgroupMount, "memory", dir)
			}
		}
	}
	return pid, console, nil
}

func (r ociRuntime) start(ctx context.Context, rec *record) error {
	_, err := r.run(ctx, rec, nil, "start", rec.ID)
	return err
}

func (r ociRuntime) kill(ctx context.Context, rec *record, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, rec, nil, append(args, rec.ID, strconv.Itoa(sig))...)
	if err != nil && (strings.Contains(err.Error(), "not running") || strings.Contains(err.Error(), "does not exist")) {
		return nil // already gone: the exit watcher reports it
	}
	return err
}

func (r ociRuntime) delete(ctx context.Context, rec *record) error {
	_, err := r.run(ctx, rec, nil, "delete", "--force", rec.ID)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil
	}
	return err
}

func (r ociRuntime) update(ctx context.Context, rec *record, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ociTimeout)
	defer cancel()
	cmd := r.command(ctx, rec, "update", "--resources", "-", rec.ID)
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s update %s: %w: %s", rec.RuntimePath, rec.ID, err, bytes.TrimSpace(out))
	}
	return nil
}

func (r ociRuntime) started(ctx context.Context, rec *record) (bool, error) {
	out, err := r.run(ctx, rec, nil, "state", rec.ID)
	if err != nil {
		return false, err
	}
	var st specs.State
	if err := json.Unmarshal(out, &st); err != nil {
		return false, fmt.Errorf("decode runtime state: %w", err)
	}
	return st.Status == specs.StateRunning, nil
}

var errNoRuntime = errors.New("unknown runtime kind")
