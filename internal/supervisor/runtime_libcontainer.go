package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/lcprocess"
	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/pty"
)

// libcontainerRuntime runs containers in-process: libcontainer re-executes
// this binary as "init" (see cmd/berth-supervisor), so the container init is
// the supervisor's own child. The libcontainer.Container of a create is
// kept only for the start that normally follows (Load parses the whole
// config again, ~0.2 ms); every other call, and a start after an upgrade or
// restart, Loads it from the runtime root.
type libcontainerRuntime struct {
	created sync.Map // id -> *libcontainer.Container, until its start or delete
	// dir is a container's supervisor directory (its CRIU configuration
	// file is there, checkpoint.go).
	dir func(id string) string
}

func (r *libcontainerRuntime) create(_ context.Context, rec *record, spec *specs.Spec, io stdio) (int, *os.File, error) {
	if spec.Process == nil {
		return 0, nil, v1.Errorf(v1.CodeInvalidArgument, "spec has no process")
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: rec.ID, Spec: spec, UseSystemdCgroup: systemdCgroup(spec)})
	if err != nil {
		return 0, nil, v1.Errorf(v1.CodeInvalidArgument, "convert spec: %v", err)
	}
	// specconv leaves the AppArmor profile out of the config (runc's CLI
	// puts it on the init process instead); here it goes in the config,
	// which the container's state keeps.
	cfg.AppArmorProfile = spec.Process.ApparmorProfile
	// Named first: libcontainer takes the first label of a key, and a
	// user's annotation must not choose CRIU's configuration.
	cfg.Labels = append([]string{r.criuLabel(rec.ID)}, cfg.Labels...)
	p, err := newProcess(spec.Process)
	if err != nil {
		return 0, nil, err
	}
	p.Init = true
	var consoleParent, consoleChild *os.File
	if rec.Terminal {
		// The init allocates the pty inside the container, makes the slave
		// its stdio and controlling terminal, and sends the master here.
		if consoleParent, consoleChild, err = pty.SocketPair(); err != nil {
			return 0, nil, err
		}
		defer consoleParent.Close()
		p.ConsoleSocket = consoleChild
		if cs := spec.Process.ConsoleSize; cs != nil {
			p.ConsoleWidth, p.ConsoleHeight = uint16(cs.Width), uint16(cs.Height)
		}
	} else {
		p.Stdin, p.Stdout, p.Stderr = io.stdin, io.stdout, io.stderr
	}
	lc, err := libcontainer.Create(rec.RuntimeRoot, rec.ID, cfg)
	if errors.Is(err, libcontainer.ErrExist) {
		if consoleChild != nil {
			consoleChild.Close()
		}
		return 0, nil, v1.Errorf(v1.CodeAlreadyExists, "libcontainer state of %s exists in %s", rec.ID, rec.RuntimeRoot)
	}
	if err != nil {
		if consoleChild != nil {
			consoleChild.Close()
		}
		return 0, nil, fmt.Errorf("libcontainer create: %w", err)
	}
	err = lc.Start(p)
	if consoleChild != nil {
		// The init has its copy (and has sent the master by the time Start
		// returned); ours must go so that a receive sees EOF, not a hang,
		// if nothing was sent.
		consoleChild.Close()
	}
	if err != nil {
		lc.Destroy()
		return 0, nil, fmt.Errorf("libcontainer start init: %w", err)
	}
	pid, err := p.Pid()
	if err != nil {
		lc.Destroy()
		return 0, nil, fmt.Errorf("libcontainer init pid: %w", err)
	}
	var console *os.File
	if rec.Terminal {
		if console, err = pty.Receive(consoleParent); err != nil {
			lc.Signal(unix.SIGKILL)
			p.Wait()
			lc.Destroy()
			return 0, nil, err
		}
	}
	rec.MemoryCgroup = memoryCgroup(lc, spec.Linux)
	r.created.Store(rec.ID, lc)
	return pid, console, nil
}

// systemdCgroup reports whether spec asks for a systemd scope (berthd's
// systemd cgroup driver writes slice:prefix:name) rather than a cgroupfs
// directory: libcontainer then asks systemd for the scope, and sets its
// resources as unit properties too, so that a daemon-reload does not undo
// them (cgroups/systemd: Delegate=yes, DefaultDependencies=no, OOMPolicy
// from memory.oom.group where systemd allows it on a scope, 253+).
func systemdCgroup(spec *specs.Spec) bool {
	return spec.Linux != nil && cgroupdriver.IsScopePath(spec.Linux.CgroupsPath)
}

// memoryCgroup is the container's memory cgroup directory: its
// cgroupsPath's directory (cgroupdriver.Dir: a cgroupfs path as it is, a
// systemd scope below its expanded slice) under the unified hierarchy or
// the v1 memory hierarchy's mount point, found once. Only when the path
// maps to no directory is the container's state asked (~0.1 ms: it reads
// the init's /proc entries too).
func memoryCgroup(lc *libcontainer.Container, linux *specs.Linux) string {
	if linux != nil {
		if dir, err := cgroupdriver.Dir(linux.CgroupsPath); err == nil {
			if cgroups.IsCgroup2UnifiedMode() {
				return filepath.Join(cgroupMount, dir)
			}
			if mnt, err := memoryMount(); err == nil {
				return filepath.Join(mnt, dir)
			}
		}
	}
	st, err := lc.State()
	if err != nil {
		return ""
	}
	if cgroups.IsCgroup2UnifiedMode() {
		return st.CgroupPaths[""]
	}
	return st.CgroupPaths["memory"]
}

const cgroupMount = "/sys/fs/cgroup"

var memoryMount = sync.OnceValues(func() (string, error) { return cgroups.FindCgroupMountpoint("", "memory") })

// loadContainer loads rec's libcontainer state from its runtime root.
func loadContainer(rec *record) (*libcontainer.Container, error) {
	lc, err := libcontainer.Load(rec.RuntimeRoot, rec.ID)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, v1.Errorf(v1.CodeNotFound, "no libcontainer state for %s", rec.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("libcontainer load %s: %w", rec.ID, err)
	}
	return lc, nil
}

func (r *libcontainerRuntime) start(_ context.Context, rec *record) error {
	var lc *libcontainer.Container
	if v, ok := r.created.LoadAndDelete(rec.ID); ok {
		lc = v.(*libcontainer.Container)
	} else {
		var err error
		if lc, err = loadContainer(rec); err != nil {
			return err
		}
	}
	if err := lc.Exec(); err != nil {
		return fmt.Errorf("libcontainer exec %s: %w", rec.ID, err)
	}
	return nil
}

func (r *libcontainerRuntime) kill(_ context.Context, rec *record, sig int, all bool) error {
	lc, err := loadContainer(rec)
	if err != nil {
		return err
	}
	if all {
		pids, err := lc.Processes()
		if err != nil {
			return fmt.Errorf("list processes of %s: %w", rec.ID, err)
		}
		// Through pidfds, to what the cgroup still holds: a pid listed
		// above may since have exited and been reused outside it.
		if err := proctree.SignalMembers(pids, unix.Signal(sig), lc.Processes); err != nil {
			return fmt.Errorf("kill processes of %s: %w", rec.ID, err)
		}
		return nil
	}
	if unix.Signal(sig) != unix.SIGKILL && rec.StartedAt != 0 {
		waitExecd(rec.Pid, time.Second)
	}
	if err := lc.Signal(unix.Signal(sig)); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("signal %s: %w", rec.ID, err)
	}
	return nil
}

// initComm is the name libcontainer's init process carries until it execs
// the container's process (nsexec's stage 2).
const initComm = "runc:[2:INIT]"

// waitExecd waits, up to timeout, until process pid no longer runs
// libcontainer's init. Why: Start returns once the init has written its
// exec FIFO, a moment before its execve. A catchable signal in that moment
// reaches the init's Go runtime, which, as pid 1 of its pid namespace, cannot
// die of it and exits 2: a SIGTERM'd container would report exit code 2
// whatever its own process does with the signal.
func waitExecd(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != initComm || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *libcontainerRuntime) delete(_ context.Context, rec *record) error {
	r.created.Delete(rec.ID)
	lc, err := loadContainer(rec)
	if err != nil {
		var e *v1.Error
		if errors.As(err, &e) && e.Code == v1.CodeNotFound {
			return nil
		}
		return err
	}
	if err := lc.Destroy(); err != nil {
		return fmt.Errorf("libcontainer destroy %s: %w", rec.ID, err)
	}
	return nil
}

func (r *libcontainerRuntime) update(_ context.Context, rec *record, res *specs.LinuxResources) error {
	lc, err := loadContainer(rec)
	if err != nil {
		return err
	}
	spec, err := readSpec(rec.Bundle)
	if err != nil {
		return err
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	spec.Linux.Resources = res
	// With a systemd scope, Set below updates the unit's properties as
	// well as the cgroup files.
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: rec.ID, Spec: spec, UseSystemdCgroup: systemdCgroup(spec)}, nil)
	if err != nil {
		return v1.Errorf(v1.CodeInvalidArgument, "convert resources: %v", err)
	}
	cfg := lc.Config()
	// Device rules are not a resource update; keep the container's own.
	cg.Resources.Devices = cfg.Cgroups.Resources.Devices
	cfg.Cgroups.Resources = cg.Resources
	if err := lc.Set(cfg); err != nil {
		return fmt.Errorf("libcontainer set resources of %s: %w", rec.ID, err)
	}
	return nil
}

func (r *libcontainerRuntime) started(_ context.Context, rec *record) (bool, error) {
	lc, err := loadContainer(rec)
	if err != nil {
		return false, err
	}
	st, err := lc.Status()
	if err != nil {
		return false, err
	}
	return st == libcontainer.Running || st == libcontainer.Paused, nil
}

// newProcess converts the spec's process (see lcprocess.New).
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp, err := lcprocess.New(p)
	if err != nil {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "%v", err)
	}
	return lp, nil
}

// readSpec reads <bundle>/config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "read bundle spec: %v", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "decode bundle spec: %v", err)
	}
	if spec.Root == nil || !filepath.IsAbs(spec.Root.Path) {
		return nil, v1.Errorf(v1.CodeInvalidArgument, "spec root.path must be absolute")
	}
	return &spec, nil
}
