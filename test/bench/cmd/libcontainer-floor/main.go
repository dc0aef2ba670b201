// Command libcontainer-floor measures the floor of a container create and
// start: in-process libcontainer, as berth's supervisor uses it, running a
// container from an OCI spec a runtime wrote (a bundle's config.json),
// one create every -period. berth-bench's container-floor workload runs it;
// it prints a floor.Result as JSON on stdout.
//
//	libcontainer-floor -spec config.json -root DIR [-n 10] [-period 30ms]
//	libcontainer-floor -cleanup              remove what a killed run left
//
// The spec is used as it is, but for the container id, its cgroup
// (/berth-floor/<id>) and its stdio (/dev/null). It must be a container of
// a pod that is still running: it joins the pod's namespaces.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	// The container init side, as in cmd/berth-supervisor.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/berth-cri/berth/internal/lcprocess"
	"github.com/berth-cri/berth/test/bench/internal/floor"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // libcontainer re-executes us as the container's init
	}
}

// sealedEnv marks the re-executed sealed copy, so that a failed seal
// cannot loop.
const sealedEnv = "_BERTH_FLOOR_SEALED"

func main() {
	specPath := flag.String("spec", "", "the bundle's config.json (required)")
	root := flag.String("root", "", "libcontainer root dir, emptied and removed at the end (required)")
	n := flag.Int("n", 10, "measured creates")
	warmup := flag.Int("warmup", 1, "creates before the measured ones, not recorded")
	period := flag.Duration("period", 30*time.Millisecond, "one create every period (0: back to back)")
	cleanup := flag.Bool("cleanup", false, "only remove the floor's cgroups (/sys/fs/cgroup/*/"+floor.CgroupParent+")")
	flag.Parse()
	if *cleanup {
		if err := floor.Sweep(); err != nil {
			fatal(err)
		}
		return
	}
	if *specPath == "" || *root == "" {
		fatal(errors.New("-spec and -root are required"))
	}
	seal()

	spec, err := readSpec(*specPath)
	if err != nil {
		fatal(err)
	}
	res, err := measure(spec, *root, *n, *warmup, *period)
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		fatal(err)
	}
}

// seal re-executes the program from a sealed in-memory copy of itself, as
// berth's supervisor does at start. Otherwise libcontainer copies the
// binary for every container it starts (CVE-2019-5736), which the
// supervisor never pays and the floor must not either.
func seal() {
	if _, ok := os.LookupEnv(sealedEnv); ok || exeseal.IsSelfExeCloned() {
		os.Unsetenv(sealedEnv)
		return
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		fatal(err)
	}
	st, err := self.Stat()
	if err != nil {
		fatal(err)
	}
	// A memfd, as the supervisor makes: CloneSelfExe may pick an overlay,
	// which IsSelfExeCloned does not recognise.
	f, err := exeseal.CloneBinary(self, st.Size(), "/proc/self/exe", os.TempDir())
	if err != nil {
		fatal(fmt.Errorf("seal own binary: %w", err))
	}
	err = syscall.Exec(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.Args, append(os.Environ(), sealedEnv+"=1"))
	fatal(fmt.Errorf("exec sealed copy: %w", err))
}

func readSpec(path string) (*specs.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Process == nil || s.Linux == nil || s.Root == nil {
		return nil, fmt.Errorf("%s: no process, linux or root", path)
	}
	return &s, nil
}

// measure runs warmup+n creates, one every period, and returns the
// samples of the last n. The root dir and the cgroups go in any case.
func measure(spec *specs.Spec, root string, n, warmup int, period time.Duration) (floor.Result, error) {
	var res floor.Result
	floor.Sweep() // a killed earlier run's
	os.RemoveAll(root)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return res, err
	}
	defer func() {
		floor.Sweep()
		os.RemoveAll(root)
	}()
	// Interrupted: kill the container in flight (a hung Start or Exec
	// fails), stop before the next, and clean up as after a failure.
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		stop.Store(true)
		floor.Sweep()
	}()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return res, err
	}
	defer null.Close()

	var last time.Time
	for i := -warmup; i < n; i++ {
		time.Sleep(time.Until(last.Add(period)))
		if stop.Load() {
			return res, errors.New("interrupted")
		}
		now := time.Now()
		prev := last
		last = now
		id := fmt.Sprintf("floor-%d-%d", os.Getpid(), i+warmup)
		create, start, err := once(spec, root, id, null)
		if err != nil {
			return res, fmt.Errorf("create %d: %w", i+warmup, err)
		}
		if i >= 0 {
			res.Create = append(res.Create, ms(create))
			res.Start = append(res.Start, ms(start))
			if !prev.IsZero() {
				res.Interval = append(res.Interval, ms(now.Sub(prev)))
			}
		}
	}
	return res, nil
}

// once creates, starts and removes one container: the supervisor's create
// (specconv, libcontainer.Create, Start with the process) and start
// (Exec). Only Create+Start and Exec are timed; the spec's conversion is
// the same small cost for everyone, and the kill and Destroy are the
// stop and remove, not measured here.
func once(spec *specs.Spec, root, id string, null *os.File) (create, start time.Duration, err error) {
	spec.Linux.CgroupsPath = "/" + floor.CgroupParent + "/" + id
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return 0, 0, fmt.Errorf("convert spec: %w", err)
	}
	p, err := lcprocess.New(spec.Process)
	if err != nil {
		return 0, 0, err
	}
	p.Init = true
	p.Stdin, p.Stdout, p.Stderr = null, null, null

	t0 := time.Now()
	lc, err := libcontainer.Create(filepath.Join(root, "state"), id, cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("libcontainer create: %w", err)
	}
	defer func() {
		// The container runs its own command (the pause of the lifecycle
		// container would never exit): kill it, then remove it.
		lc.Signal(syscall.SIGKILL)
		p.Wait()
		if derr := lc.Destroy(); derr != nil && err == nil {
			err = fmt.Errorf("libcontainer destroy: %w", derr)
		}
	}()
	if err := lc.Start(p); err != nil {
		return 0, 0, fmt.Errorf("libcontainer start init: %w", err)
	}
	t1 := time.Now()
	if err := lc.Exec(); err != nil {
		return 0, 0, fmt.Errorf("libcontainer exec: %w", err)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "libcontainer-floor: %v\n", err)
	os.Exit(1)
}
