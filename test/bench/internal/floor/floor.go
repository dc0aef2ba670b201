// Package floor is what berth-bench and cmd/libcontainer-floor share: the
// samples the floor program prints and the sweep of the cgroups it makes.
// No cgo here: berth-bench is built without it.
package floor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CgroupParent is the cgroup, below each hierarchy's root, under which the
// floor's containers get theirs: /berth-floor/<id>.
const CgroupParent = "berth-floor"

// Result is what libcontainer-floor prints on stdout: one sample per
// measured iteration, in milliseconds, and why it stopped early if it did.
type Result struct {
	Create []float64 `json:"create_ms"` // libcontainer.Create + Container.Start
	Start  []float64 `json:"start_ms"`  // Container.Exec
	// Interval is the time from the previous create's start: the pace
	// really kept.
	Interval []float64 `json:"interval_ms"`
	Error    string    `json:"error,omitempty"`
}

// cgroupRoot is where the hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// Sweep removes every cgroup under CgroupParent in every hierarchy (v1) or
// the unified one (v2), killing what still runs in them. It is the safety
// net after a floor program that was killed or failed half-way.
func Sweep() error {
	var dirs []string
	if exists(filepath.Join(cgroupRoot, "cgroup.controllers")) {
		dirs = []string{filepath.Join(cgroupRoot, CgroupParent)} // v2
	} else {
		// v1: one per hierarchy (cpu,cpuacct links to the same one; the
		// hybrid mode's unified is one too).
		dirs, _ = filepath.Glob(filepath.Join(cgroupRoot, "*", CgroupParent))
	}
	var errs []error
	for _, d := range dirs {
		if !exists(d) {
			continue
		}
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree kills the processes of every cgroup in root and removes the
// cgroups, deepest first.
func removeTree(root string) error {
	var tree []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			tree = append(tree, p)
		}
		return nil
	})
	slices.Reverse(tree)
	var errs []error
	for _, d := range tree {
		// A frozen cgroup's processes cannot die.
		os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
		var err error
		// Killed processes take a moment to leave their cgroup.
		for try := 0; try < 50; try++ {
			killAll(d)
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func killAll(cgroup string) {
	b, _ := os.ReadFile(filepath.Join(cgroup, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
