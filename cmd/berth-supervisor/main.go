// Command berth-supervisor is the berth supervisor: started (detached) by
// berthd when none runs, the parent of every container init. See
// internal/supervisor.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	// The container init side of libcontainer: the namespace-entering C
	// code (runs before the Go runtime when re-executed as "init") and the
	// device cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/supervisor"
	"github.com/berth-cri/berth/internal/version"
)

// options are the command line's.
type options struct {
	stateDir, cgroup, scope string
	debug, noKeeper         bool
}

func parseFlags(args []string) options {
	var o options
	fs := flag.NewFlagSet("berth-supervisor", flag.ExitOnError)
	fs.StringVar(&o.stateDir, "state-dir", "/run/berth", "berth state directory (config state_dir)")
	fs.StringVar(&o.cgroup, "cgroup", "berth-supervisor", "cgroup (below each hierarchy's root) to move into at start; empty: stay")
	fs.StringVar(&o.scope, "systemd-scope", "", "transient systemd scope (in system.slice) to move into at start instead of --cgroup (the systemd cgroup driver)")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	fs.BoolVar(&o.noKeeper, "no-keeper", false, "run the supervisor alone, without the keeper above it: a supervisor crash then loses the exits and unread output of its containers")
	fs.Parse(args)
	return o
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// libcontainer re-executes us as a container's "runc init".
		libcontainer.Init()
		return // not reached
	}
	o := parseFlags(os.Args[1:])
	if keeperMode(o) {
		os.Exit(runKeeper(o))
	}
	exe, err := runSealed()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-supervisor: %v\n", err)
		os.Exit(1)
	}
	logPath := filepath.Join(o.stateDir, "supervisor", "supervisor.log")
	log := newLogger(newRotatingLog(2, logPath, maxLogBytes), o.debug)
	if err := run(log, exe, o.stateDir, o.cgroup, o.scope); err != nil {
		log.WithError(err).Error("supervisor failed")
		os.Exit(1)
	}
}

// sealedFromEnv carries the real executable's path across the re-exec
// from the sealed copy. It is removed at once, so neither containers nor
// an in-place upgrade (which must seal its new binary again) inherit it.
const sealedFromEnv = "_BERTH_SUPERVISOR_SEALED_FROM"

// runSealed re-executes the supervisor from a sealed in-memory copy of its
// binary, once, and returns the real binary's path (what an upgrade
// re-executes). libcontainer starts every container's init by running
// /proc/self/exe; unless that is already a sealed copy, it makes one per
// container (CVE-2019-5736: a container must never reach the binary on
// disk) -- an overlay mount or a copy of the whole binary each time. One
// copy at start makes container creation that much cheaper, and just as
// safe. If sealing is impossible, the supervisor runs from its file and
// libcontainer protects each container as before.
func runSealed() (string, error) {
	if from, ok := os.LookupEnv(sealedFromEnv); ok {
		os.Unsetenv(sealedFromEnv)
		// Executed from /proc/self/fd/N, the kernel named the process "N":
		// give it its name back for ps, top and pgrep.
		setProcessName("berth-supervisor")
		return from, nil // sealed, or tried: either way, go on
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	if exeseal.IsSelfExeCloned() {
		return exe, nil
	}
	f, err := os.Open(exe)
	if err != nil {
		return exe, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return exe, nil
	}
	sealed, err := exeseal.CloneBinary(f, st.Size(), exe, os.TempDir())
	if err != nil {
		return exe, nil
	}
	env := append(os.Environ(), sealedFromEnv+"="+exe)
	err = unix.Exec(fmt.Sprintf("/proc/self/fd/%d", sealed.Fd()), os.Args, env)
	sealed.Close()
	return exe, nil // exec failed: run from the file
}

// newLogger is the supervisor's logger: logrus, as berthd's, in its text
// form ("time=... level=info msg=... key=value"), so that both logs read
// and grep alike (request_id=...). Not the standard logger, which
// libcontainer writes to.
func newLogger(w io.Writer, debug bool) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(w)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	if debug {
		log.SetLevel(logrus.DebugLevel)
	}
	return log
}

func run(log *logrus.Logger, exe, stateDir, cgroup, scope string) error {
	// Under a keeper this is already done (the keeper moved itself before
	// starting us): both steps then find us where we should be.
	joinOwnCgroup(log, cgroup, scope)
	// The supervisor outlives terminals and its parent: never die of SIGHUP
	// or SIGPIPE. SIGTERM/SIGINT end it; containers keep running and a new
	// supervisor re-adopts them. The two are caught and dropped, not
	// ignored: an ignored disposition survives execve, so every container
	// process (libcontainer re-executes this binary as its init) would start
	// with SIGHUP ignored, and a terminal container would not even end on a
	// hang-up. Caught signals are reset to the default by execve.
	dropSignals(unix.SIGHUP, unix.SIGPIPE)
	srv, err := supervisor.New(supervisor.Config{
		StateDir:      stateDir,
		Executable:    exe,
		Args:          os.Args,
		BinaryVersion: version.Version,
		// Read now, from the path: this process runs from a sealed copy.
		ExecutableFile: v1.FileID(exe),
		Logger:         log,
		OneProcInits:   true,
	})
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"pid": os.Getpid(), "socket": supervisor.SocketPath(stateDir), "version": version.Version}).Info("supervisor serving")
	return srv.Serve()
}

// joinOwnCgroup moves this process out of berthd's cgroup, whose stop or
// restart would take it along: into the systemd scope, else the cgroup of
// its own. Failures are logged: running on is better than not running.
func joinOwnCgroup(log logrus.FieldLogger, cgroup, scope string) {
	if scope != "" {
		if err := joinScope(scope); err != nil {
			// Still better than staying in berthd's service, which a
			// restart of berthd would stop, us with it.
			log.WithError(err).WithField("scope", scope).Warn("could not move into own systemd scope; using a cgroup of its own")
			cgroup = "berth-supervisor"
		} else {
			cgroup = ""
		}
	}
	if cgroup != "" {
		if err := joinCgroup(cgroup); err != nil {
			log.WithError(err).WithField("cgroup", cgroup).Warn("could not move into own cgroup")
		}
	}
}

// dropSignals catches sigs for the life of the process and discards them.
func dropSignals(sigs ...os.Signal) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		for range ch {
		}
	}()
}

// joinCgroup moves this process into <root>/<name> of every cgroup v1
// hierarchy (or of the v2 tree), so that berthd's cgroup (a systemd unit
// restart kills it) no longer contains us.
func joinCgroup(name string) error {
	const root = "/sys/fs/cgroup"
	pid := []byte(strconv.Itoa(os.Getpid()))
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var firstErr error
	for _, e := range entries {
		h := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil || e.Name() == "unified" {
			continue // not a v1 hierarchy root (or the hybrid v2 tree)
		}
		dir := filepath.Join(h, name)
		if err := os.MkdirAll(dir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", dir, err)
		}
	}
	return firstErr
}
