package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/snapshot"
)

// Net is a pod daemon's private CNI network.
type Net struct {
	Bridge, Subnet, Prefix, DataDir string
}

// NewPod is New for a daemon that can run pods: a registry holding the
// pause and busybox images (pause is its sandbox image), and a bridge CNI
// network of its own, so tests never share network state with each other
// or with a berthd running on the host. bridge names the bridge, net24 is
// the first three octets of its /24 ("10.87.3").
func NewPod(t testing.TB, extra, bridge, net24 string) (*Daemon, *Registry, Net) {
	t.Helper()
	reg := NewRegistry(t)
	reg.PushPodImages(t)
	d := New(t, fmt.Sprintf("sandbox_image = %q\n", reg.Host+"/"+PauseRepo)+extra)
	n := Net{Bridge: bridge, Subnet: net24 + ".0/24", Prefix: net24 + ".", DataDir: filepath.Join(d.Dir, "ipam")}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"%s","plugins":[
 {"type":"bridge","bridge":"%s","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"%s"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"%s"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`, n.Bridge, n.Bridge, n.Subnet, n.DataDir)
	os.MkdirAll(filepath.Join(d.Dir, "net.d"), 0o755)
	if err := os.WriteFile(filepath.Join(d.Dir, "net.d", "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.Bridge).Run() })
	return d, reg, n
}

// Counts are resource counts, for leak checks.
type Counts map[string]int

func (c Counts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, c[k])
	}
	return b.String()
}

// Differ reports whether c (counted after some work) differs from before
// in a way that means a leak: any count changed, except berthd's
// descriptors, which only may not grow (one open at the first count, such
// as a client connection being set up, may since have closed).
func (c Counts) Differ(before Counts) bool {
	for k, n := range c {
		if k == "berthd fds" && n <= before[k] {
			continue
		}
		if n != before[k] {
			return true
		}
	}
	return len(c) != len(before)
}

// Resources counts what d's pods use of the host and of berthd. All but
// cgroups are d's own: other berthds (other tests, a developer's own) work
// meanwhile.
func (d *Daemon) Resources(n Net) Counts {
	c := Counts{"mounts": len(d.mounts())}
	netns, _ := os.ReadDir(filepath.Join(d.Dir, "run", "netns"))
	c["netns pins"] = len(netns)
	links, _ := exec.Command("ip", "-o", "link", "show", "master", n.Bridge).Output()
	c["veths on the bridge"] = strings.Count(string(links), "\n")
	ips, _ := filepath.Glob(filepath.Join(n.DataDir, "*", n.Prefix+"*"))
	c["IP allocations"] = len(ips)
	// berth's container cgroups on v1 and v2 (cgroupfs driver) and its
	// scopes of parentless pods (systemd driver).
	for _, pattern := range []string{"/sys/fs/cgroup/memory/berth/*/", "/sys/fs/cgroup/berth/*/", "/sys/fs/cgroup/berth.slice/berth-*.scope/"} {
		cg, _ := filepath.Glob(pattern)
		c["cgroups"] += len(cg)
	}
	c["berthd fds"] = CountFDs(d.Cmd.Process.Pid)
	for key, dir := range map[string]string{
		"rootfs dirs": "snapshots/rootfs", "layer snapshots": "snapshots/layers", "snapshot temp dirs": "snapshots/tmp",
	} {
		ents, _ := os.ReadDir(filepath.Join(d.Dir, "root", dir))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), snapshot.SpareDirPrefix) { // kept ready on purpose
				c[key]++
			}
		}
	}
	blobs, _ := filepath.Glob(filepath.Join(d.Dir, "root", "content", "blobs", "*", "*"))
	c["content blobs"] = len(blobs)
	c["state temp files"] = d.countTempFiles()
	c["supervised processes"] = len(d.SupervisedPIDs())
	return c
}

// countTempFiles counts atomicfile leftovers (".name.tmp-*") under berthd's
// directories, not looking inside container root filesystems.
func (d *Daemon) countTempFiles() int {
	n := 0
	for _, top := range []string{filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "run")} {
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() && (e.Name() == "rootfs" || e.Name() == "layers" || e.Name() == "netns") {
				return filepath.SkipDir
			}
			if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
				n++
			}
			return nil
		})
	}
	return n
}

// SupervisorPID is the pid of the supervisor of d's state dir, or 0 when
// none runs: the pid its lock file names, if that process still is one of
// d's supervisors (a berth-supervisor just started by berthd's watchdog,
// which gives way at once, must not pass for it).
func (d *Daemon) SupervisorPID() int {
	return d.lockHolder("supervisor.lock", false)
}

// KeeperPID is the pid of the keeper above d's supervisor, or 0 when none
// runs.
func (d *Daemon) KeeperPID() int {
	return d.lockHolder("keeper.lock", true)
}

// DescribeSupervisors says, for a failure message, which of d's
// supervisor processes run (pid, parent, name) and what its lock files
// hold.
func (d *Daemon) DescribeSupervisors() string {
	var b strings.Builder
	for _, pid := range d.supervisors() {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		ppid, _ := proctree.ParentOf(pid)
		fmt.Fprintf(&b, "pid %d (parent %d) named %q; ", pid, ppid, strings.TrimSpace(string(comm)))
	}
	for _, name := range []string{"keeper.lock", "supervisor.lock"} {
		c, err := os.ReadFile(filepath.Join(d.Dir, "run", "supervisor", name))
		fmt.Fprintf(&b, "%s: %q %v; ", name, strings.TrimSpace(string(c)), err)
	}
	return b.String()
}

// lockHolder reads the pid in <state dir>/supervisor/<name> and returns it
// if it is one of d's supervisor processes (a keeper or not, as keeper
// says), else the first such process found (0 if none).
func (d *Daemon) lockHolder(name string, keeper bool) int {
	sups := d.supervisors()
	b, _ := os.ReadFile(filepath.Join(d.Dir, "run", "supervisor", name))
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && slices.Contains(sups, pid) && isKeeper(pid) == keeper {
		return pid
	}
	for _, pid := range sups {
		if isKeeper(pid) == keeper {
			return pid
		}
	}
	return 0
}

// isKeeper: pid is a keeper (the same binary, named berth-keeper).
func isKeeper(pid int) bool {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(comm)) == "berth-keeper"
}

// SupervisedPIDs are the live (not zombie) children of d's supervisor and
// of the keeper above it (containers a killed supervisor left), the
// supervisor itself aside: one per ready sandbox's pause and per created
// or running container.
func (d *Daemon) SupervisedPIDs() []int {
	sup := d.SupervisorPID()
	if sup == 0 {
		return nil
	}
	pids := childrenOf(sup)
	if k := d.KeeperPID(); k != 0 {
		for _, pid := range childrenOf(k) {
			if pid != sup {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// supervisors are the berth-supervisor processes (keeper and supervisor)
// of d's state dir.
func (d *Daemon) supervisors() []int {
	stateDir := filepath.Join(d.Dir, "run")
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "berth-supervisor") && slices.Contains(args, stateDir) {
			pids = append(pids, pidOf(p))
		}
	}
	return pids
}

// childrenOf lists the live (not zombie) children of pid.
func childrenOf(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err == nil && ppid == pid && state != "Z" {
			out = append(out, pidOf(p))
		}
	}
	return out
}

// pidOf is the pid in a /proc/<pid>/... path.
func pidOf(procPath string) int {
	pid, _ := strconv.Atoi(strings.Split(procPath, "/")[2])
	return pid
}

// ProcStatus reads a numeric field (Threads, VmRSS in kB) of
// /proc/pid/status, or -1.
func ProcStatus(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

// CountFDs is how many files pid has open.
func CountFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}
