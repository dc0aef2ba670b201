package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// Checkpoint and restore (protocol 1.6) through libcontainer's CRIU support.
//
// The stdio problem: a container's stdout and stderr are FIFOs in the
// supervisor's directory (fifo.go), on a mount the container's mount
// namespace does not have, so CRIU cannot dump them by path ("Can't lookup
// mount"). They are dumped as external files instead: CRIU records a key,
// file[<mnt_id>:<inode>] (hex), in place of the path, and a restore is told
// which of its own descriptors each key is (inherit-fd). libcontainer has
// no option for either, but it passes CRIU a configuration file named by
// the container's org.criu.config label, which every libcontainer
// container gets at create (criuConfigLabel); the supervisor writes that
// file just before a dump (external lines) or a restore (inherit-fd lines)
// and removes it after. The keys and the descriptors they were (0, 1, 2)
// travel in the images directory as stdioFile (stdio.json); on restore
// CRIU runs with the new container's stdin, stdout and stderr as its own
// 0, 1 and 2, so those are the descriptors named.

const (
	// criuConfigLabel is libcontainer's label naming the CRIU
	// configuration file of a container's checkpoint and restore.
	criuConfigLabel = "org.criu.config"
	criuConfigName  = "criu.conf"
	// stdioFile, in the images directory, lists the external stdio.
	stdioFile = "berth-stdio.json"
)

// externalStdio is one of the init's stdio descriptors dumped as an
// external file.
type externalStdio struct {
	FD  int    `json:"fd"`
	Key string `json:"key"`
}

// criuLabel is the label libcontainer containers are created with.
func (r *libcontainerRuntime) criuLabel(id string) string {
	return criuConfigLabel + "=" + filepath.Join(r.dir(id), criuConfigName)
}

// checkpoint dumps running container id into req.ImagesDir, leaving it
// running. Calls for one container are serialised with its other changes.
func (s *Server) checkpoint(ctx context.Context, id string, req *v1.CheckpointRequest) error {
	if req == nil || !filepath.IsAbs(req.ImagesDir) || !filepath.IsAbs(req.WorkDir) || !filepath.IsAbs(req.CriuPath) {
		return v1.Errorf(v1.CodeInvalidArgument, "checkpoint needs absolute images_dir, work_dir and criu_path")
	}
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	st := c.state()
	if st.Status != v1.StatusRunning {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q is %s, not running", id, st.Status)
	}
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	r, ok := s.rt[rec.Kind].(*libcontainerRuntime)
	if !ok {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q runs under an %s runtime: only libcontainer containers can be checkpointed", id, rec.Kind)
	}
	if rec.Terminal {
		// CRIU would need the pty master, which only the supervisor holds.
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q has a terminal (tty): terminal containers cannot be checkpointed", id)
	}
	if err := s.criuOnPath(req.CriuPath); err != nil {
		return err
	}
	return r.checkpoint(ctx, &rec, req)
}

// pause freezes (or, with freeze false, thaws) running container id's
// processes through libcontainer's cgroup freezer.
func (s *Server) pause(id string, freeze bool) error {
	c, err := s.get(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if st := c.state(); st.Status != v1.StatusRunning {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q is %s, not running", id, st.Status)
	}
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	if rec.Kind != v1.RuntimeLibcontainer {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q runs under an %s runtime: only libcontainer containers are paused", id, rec.Kind)
	}
	lc, err := loadContainer(&rec)
	if err != nil {
		return err
	}
	if freeze {
		err = lc.Pause()
	} else {
		err = lc.Resume()
		if errors.Is(err, libcontainer.ErrNotPaused) {
			err = nil // resuming is idempotent: an error path resumes everything
		}
	}
	if err != nil {
		return fmt.Errorf("pause %s (%v): %w", id, freeze, err)
	}
	return nil
}

func (r *libcontainerRuntime) checkpoint(_ context.Context, rec *record, req *v1.CheckpointRequest) error {
	lc, err := loadContainer(rec)
	if err != nil {
		return err
	}
	conf, ok := utils.SearchLabels(lc.Config().Labels, criuConfigLabel)
	if !ok || conf == "" {
		return v1.Errorf(v1.CodeFailedPrecondition, "container %q was created by a supervisor before protocol 1.6: its stdio cannot be checkpointed", rec.ID)
	}
	pid := rec.Pid
	ext, err := stdioExternals(pid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(req.ImagesDir, 0o700); err != nil {
		return fmt.Errorf("checkpoint images dir: %w", err)
	}
	data, err := json.Marshal(ext)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(req.ImagesDir, stdioFile), data, 0o600); err != nil {
		return fmt.Errorf("checkpoint images dir: %w", err)
	}
	var lines strings.Builder
	for _, e := range ext {
		fmt.Fprintf(&lines, "external %s\n", e.Key)
	}
	if err := os.WriteFile(conf, []byte(lines.String()), 0o600); err != nil {
		return fmt.Errorf("criu configuration: %w", err)
	}
	defer os.Remove(conf)
	err = lc.Checkpoint(&libcontainer.CriuOpts{
		ImagesDirectory: req.ImagesDir,
		WorkDirectory:   req.WorkDir,
		LeaveRunning:    true,
	})
	if err != nil {
		log := filepath.Join(req.WorkDir, "dump.log")
		return fmt.Errorf("criu dump of %s (%s%s): %w", rec.ID, log, criuLogErrors(log), err)
	}
	return nil
}

// stdioExternals lists pid's stdio descriptors that are FIFOs opened by
// path (the supervisor's), with their CRIU keys. Anonymous pipes need no
// help (libcontainer passes them as inherit-fd itself).
func stdioExternals(pid int) ([]externalStdio, error) {
	var out []externalStdio
	for fd := 0; fd < 3; fd++ {
		p := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
		target, err := os.Readlink(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("stdio of %d: %w", pid, err)
		}
		if strings.HasPrefix(target, "pipe:") {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return nil, fmt.Errorf("stdio of %d: %w", pid, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			continue
		}
		mnt, err := fdMountID(pid, fd)
		if err != nil {
			return nil, err
		}
		out = append(out, externalStdio{FD: fd, Key: fmt.Sprintf("file[%x:%x]", mnt, st.Ino)})
	}
	return out, nil
}

// fdMountID reads the mnt_id of pid's descriptor fd from its fdinfo.
func fdMountID(pid, fd int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return 0, fmt.Errorf("fdinfo of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("fdinfo of %d fd %d has no mnt_id", pid, fd)
}

// restore creates rec's libcontainer container from spec and has CRIU
// restore its processes from req.ImagesDir, with io as their stdio. It
// returns the restored init's pid and fills rec.MemoryCgroup.
func (r *libcontainerRuntime) restore(_ context.Context, rec *record, spec *specs.Spec, io stdio, req *v1.RestoreRequest) (int, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: rec.ID, Spec: spec, UseSystemdCgroup: systemdCgroup(spec)})
	if err != nil {
		return 0, v1.Errorf(v1.CodeInvalidArgument, "convert spec: %v", err)
	}
	cfg.Labels = append([]string{r.criuLabel(rec.ID)}, cfg.Labels...)
	data, err := os.ReadFile(filepath.Join(req.ImagesDir, stdioFile))
	if err != nil {
		return 0, v1.Errorf(v1.CodeInvalidArgument, "checkpoint images: %v", err)
	}
	var ext []externalStdio
	if err := json.Unmarshal(data, &ext); err != nil {
		return 0, v1.Errorf(v1.CodeInvalidArgument, "checkpoint images: %s: %v", stdioFile, err)
	}
	var lines strings.Builder
	for _, e := range ext {
		if e.FD < 0 || e.FD > 2 || strings.ContainsAny(e.Key, "\n ") {
			return 0, v1.Errorf(v1.CodeInvalidArgument, "checkpoint images: %s: bad entry %+v", stdioFile, e)
		}
		fmt.Fprintf(&lines, "inherit-fd fd[%d]:%s\n", e.FD, e.Key)
	}
	stop, err := serveOnce(filepath.Join(r.dir(rec.ID), criuConfigName), []byte(lines.String()))
	if err != nil {
		return 0, err
	}
	defer stop()
	p, err := newProcess(spec.Process)
	if err != nil {
		return 0, err
	}
	p.Init = true
	p.Stdin, p.Stdout, p.Stderr = io.stdin, io.stdout, io.stderr
	lc, err := libcontainer.Create(rec.RuntimeRoot, rec.ID, cfg)
	if errors.Is(err, libcontainer.ErrExist) {
		return 0, v1.Errorf(v1.CodeAlreadyExists, "libcontainer state of %s exists in %s", rec.ID, rec.RuntimeRoot)
	}
	if err != nil {
		return 0, fmt.Errorf("libcontainer create: %w", err)
	}
	if err := lc.Restore(p, &libcontainer.CriuOpts{ImagesDirectory: req.ImagesDir, WorkDirectory: req.WorkDir}); err != nil {
		lc.Destroy()
		log := filepath.Join(req.WorkDir, "restore.log")
		if pid := criuPidTaken(log); pid != 0 {
			// CRIU restores the checkpointed pids; in a pid namespace
			// shared with the pod (NamespaceMode POD) another process may
			// hold one. Not retryable as it is, so not Internal.
			return 0, v1.Errorf(v1.CodeFailedPrecondition,
				"criu restore of %s: pid %d of the checkpoint is in use in the pod's pid namespace (a container sharing its pod's pid namespace restores with its checkpointed pids; %s)", rec.ID, pid, log)
		}
		return 0, fmt.Errorf("criu restore of %s (%s%s): %w", rec.ID, log, criuLogErrors(log), err)
	}
	// libcontainer v1.5.2's handle after Restore does not know its init
	// (initProcessStartTime is unset; opencontainers/runc#5370): a fresh
	// Load does.
	loaded, err := loadContainer(rec)
	if err != nil {
		p.Signal(unix.SIGKILL)
		lc.Destroy()
		return 0, err
	}
	st, err := loaded.State()
	if err != nil {
		p.Signal(unix.SIGKILL)
		loaded.Destroy()
		return 0, fmt.Errorf("state of restored %s: %w", rec.ID, err)
	}
	rec.MemoryCgroup = memoryCgroup(loaded, spec.Linux)
	return st.InitProcessPid, nil
}

// criuLogErrors is ": " and the last few error lines of the CRIU log at
// path, or "" without any. Why: the work directory holding the log goes
// with the failed checkpoint or restore, and CRIU's RPC answer alone
// ("type RESTORE errno 17") does not say what failed.
func criuLogErrors(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "Error (") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return ""
	}
	if len(errs) > 4 {
		errs = errs[len(errs)-4:]
	}
	return ": " + strings.Join(errs, "; ")
}

// criuForkTaken is CRIU's restore error when a checkpointed pid is taken.
// Compiled at first use, not at package initialisation: every container
// init and every exec starts this binary (libcontainer re-executes it),
// and only a failed restore reads a CRIU log.
var criuForkTaken = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`Error \([^)]*\): Can't fork for ([0-9]+): File exists`)
})

// criuPidTaken is the pid the CRIU restore log at path failed to take
// because another process held it, or 0.
func criuPidTaken(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	m := criuForkTaken().FindSubmatch(data)
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// serveOnce serves content at path, a FIFO it makes, to the first opener
// and nothing (an empty file) to every later one, until stop is called.
//
// Why: CRIU reads the configuration file of an RPC twice (once early for
// its directories and log, once at the end to override the RPC's options)
// and adds its inherit-fd lines each time; the second copy of a
// descriptor fails ("Can't send fd 1 into store": the first was moved to
// CRIU's fd store and closed). external lines (dump) are idempotent, so
// a dump's file is a plain one.
func serveOnce(path string, content []byte) (stop func(), err error) {
	os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("criu configuration: %w", err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for c := content; ; c = nil {
			// Non-blocking: a writer open fails (ENXIO) until CRIU
			// opens the FIFO to read, so this polls rather than block a
			// thread that stop could not wake.
			var fd int
			for {
				fd, err = unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err == nil {
					break
				}
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
			unix.SetNonblock(fd, false)
			for len(c) > 0 {
				n, err := unix.Write(fd, c)
				if err != nil {
					break
				}
				c = c[n:]
			}
			unix.Close(fd)
		}
	}()
	return func() {
		close(done)
		<-finished
		os.Remove(path)
	}, nil
}

// criuBin is the directory put first on the supervisor's PATH: it holds
// only "criu", a symlink to the configured binary, because libcontainer
// runs exec.Command("criu", ...) and has no option for a path.
const criuBin = "criu-bin"

// criuOnPath makes "criu" on the supervisor's PATH resolve to path.
func (s *Server) criuOnPath(path string) error {
	s.criuMu.Lock()
	defer s.criuMu.Unlock()
	dir := filepath.Join(s.dir, criuBin)
	link := filepath.Join(dir, "criu")
	if cur, err := os.Readlink(link); err != nil || cur != path {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("criu link: %w", err)
		}
		tmp := link + ".new"
		os.Remove(tmp)
		if err := os.Symlink(path, tmp); err != nil {
			return fmt.Errorf("criu link: %w", err)
		}
		if err := os.Rename(tmp, link); err != nil {
			return fmt.Errorf("criu link: %w", err)
		}
	}
	// CRIU stops a task leaving its parasite code on a hardware breakpoint
	// (a debug register) by default. In VMs that do not virtualise debug
	// registers (this fleet's PVM guests) the trap never comes and the dump
	// hangs with the container's processes held; CRIU's switch 130
	// (FI_NO_BREAKPOINTS, its fault-injection variable) makes it step
	// through syscalls with PTRACE_SYSCALL instead, as on architectures
	// without breakpoints: a few more ptrace stops per task, measured as
	// no difference here. It changes nothing else.
	os.Setenv("CRIU_FAULT", "130")
	if p := os.Getenv("PATH"); !strings.HasPrefix(p, dir+":") {
		if p == "" {
			p = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		}
		os.Setenv("PATH", dir+":"+p)
	}
	return nil
}

// checkRestore refuses an OpRestore the runtime cannot do.
func (s *Server) checkRestore(kind v1.RuntimeKind, req *v1.CreateRequest) error {
	r := req.Restore
	if kind != v1.RuntimeLibcontainer {
		return v1.Errorf(v1.CodeInvalidArgument, "only libcontainer containers can be restored, not %s", kind)
	}
	if req.Terminal {
		return v1.Errorf(v1.CodeInvalidArgument, "terminal containers cannot be restored")
	}
	if !filepath.IsAbs(r.ImagesDir) || !filepath.IsAbs(r.WorkDir) || !filepath.IsAbs(r.CriuPath) {
		return v1.Errorf(v1.CodeInvalidArgument, "restore needs absolute images_dir, work_dir and criu_path")
	}
	return s.criuOnPath(r.CriuPath)
}

// restoreInit is createInit's runtime step for a restore.
func (s *Server) restoreInit(ctx context.Context, rt runtime, rec *record, spec *specs.Spec, io stdio, req *v1.RestoreRequest) (int, error) {
	r, ok := rt.(*libcontainerRuntime)
	if !ok {
		return 0, v1.Errorf(v1.CodeInvalidArgument, "only libcontainer containers can be restored, not %s", rec.Kind)
	}
	return r.restore(ctx, rec, spec, io, req)
}
