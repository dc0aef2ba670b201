// Package target describes a CRI runtime under benchmark and connects to it
// through kubelet's own CRI client, so every figure includes exactly the
// gRPC path kubelet would take.
package target

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"

	"github.com/berth-cri/berth/test/bench/internal/procfs"
)

// Spec is how hack/bench.sh describes a runtime it started (targets.json).
type Spec struct {
	// Name identifies the runtime in the report ("berth", "containerd").
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"` // unix:///path/to/socket
	// DaemonPID is the CRI daemon (berthd, containerd).
	DaemonPID int `json:"daemon_pid"`
	// HelperCmdline picks the runtime's other processes: those whose command
	// line contains all of these strings (containerd's shims name its socket,
	// berth's supervisor its state dir). Empty: the daemon alone.
	HelperCmdline []string `json:"helper_cmdline,omitempty"`
	// RootDir holds the runtime's persistent data (content, snapshots): its
	// disk usage shows whether RemoveImage really dropped the layers.
	RootDir string `json:"root_dir"`
	// LogDir is where pod log directories are created.
	LogDir string `json:"log_dir"`
	// SpecPath is where the runtime writes a container's OCI spec, {id}
	// standing for the container id: the spec container-floor runs.
	// Empty: that runtime has no floor figures.
	SpecPath string `json:"spec_path,omitempty"`
	// FloorDir is where container-floor keeps libcontainer's state: a new
	// directory on the filesystem where the runtime keeps its own runtime
	// state, so that the floor's Create pays what the runtime's does.
	// Empty: a directory under the bench's work dir.
	FloorDir string `json:"floor_dir,omitempty"`
	// ImagePolicy is the image policy file the runtime was started with
	// (berthd's registry.image_policy), which the image-policy workload
	// rewrites and has re-read (SIGHUP). Empty: that workload is n/a.
	ImagePolicy string `json:"image_policy,omitempty"`
	// CNIConfDir is the runtime's CNI config directory: the CNI floor runs
	// its plugin chain. Empty: no CNI floor for that runtime.
	CNIConfDir string `json:"cni_conf_dir,omitempty"`
	// Restart restarts the daemon with its pods left running and prints
	// {"pid": N, "launched_ns": T} (runtimes/restart.sh): node-burst's restart.
	// Empty: that workload is n/a.
	Restart []string `json:"restart,omitempty"`
	// Versions are commands whose output the report quotes, e.g.
	// ["containerd", "--version"].
	Versions [][]string `json:"versions,omitempty"`
	// Unavailable says why a runtime that should have been measured could
	// not be built or started: its column reports that, nothing else.
	Unavailable string `json:"unavailable,omitempty"`
}

// LoadSpecs reads a targets.json file: a JSON array of Spec.
func LoadSpecs(path string) ([]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var specs []Spec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, s := range specs {
		if s.Name == "" {
			return nil, fmt.Errorf("%s: target %d has no name", path, i)
		}
		if s.Unavailable != "" {
			continue
		}
		if s.Endpoint == "" || s.DaemonPID <= 0 {
			return nil, fmt.Errorf("%s: target %d needs name, endpoint and daemon_pid", path, i)
		}
	}
	return specs, nil
}

// Target is a connected runtime.
type Target struct {
	Spec
	Runtime internalapi.RuntimeService
	Images  internalapi.ImageManagerService
}

// callTimeout bounds each CRI call (cri-client applies it to every unary
// RPC but PullImage): generous, a slow call must be measured, not cut.
const callTimeout = 3 * time.Minute

// Connect dials the runtime's endpoint for both services. An unavailable
// runtime gets a Target with no clients, which the runner reports as such.
func Connect(ctx context.Context, s Spec) (*Target, error) {
	if s.Unavailable != "" {
		return &Target{Spec: s}, nil
	}
	// A nil tracer provider keeps the otel stats handler out of the path.
	rt, err := remote.NewRemoteRuntimeService(ctx, s.Endpoint, callTimeout, nil, false)
	if err != nil {
		return nil, fmt.Errorf("%s: runtime service: %w", s.Name, err)
	}
	img, err := remote.NewRemoteImageService(ctx, s.Endpoint, callTimeout, nil, false)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("%s: image service: %w", s.Name, err)
	}
	return &Target{Spec: s, Runtime: rt, Images: img}, nil
}

// Close closes both connections.
func (t *Target) Close(ctx context.Context) {
	if t.Runtime != nil {
		t.Runtime.Close(ctx)
		t.Images.Close(ctx)
	}
}

// Reconnect replaces both connections by new ones, and the daemon's pid:
// after a restart, the old connections would wait out gRPC's reconnect
// backoff, which grew while the daemon was down.
func (t *Target) Reconnect(ctx context.Context, pid int) error {
	n, err := Connect(ctx, t.Spec)
	if err != nil {
		return err
	}
	t.Close(ctx)
	t.Runtime, t.Images = n.Runtime, n.Images
	t.DaemonPID = pid
	return nil
}

// QuietContext returns ctx with a discarding logger: cri-client logs every
// failed call through klog, and an Unimplemented answer is an expected,
// reported outcome here, not noise for the terminal.
func QuietContext(ctx context.Context) context.Context {
	return klog.NewContext(ctx, logr.Discard())
}

// PIDs returns the daemon's pid followed by its helpers' pids.
func (t *Target) PIDs() ([]int, error) {
	pids := []int{t.DaemonPID}
	if len(t.HelperCmdline) == 0 {
		return pids, nil
	}
	helpers, err := procfs.FindByCmdline(t.HelperCmdline...)
	if err != nil {
		return nil, err
	}
	for _, p := range helpers {
		if p != t.DaemonPID {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// TreeCPU reads the CPU time (with reaped children) of the daemon, its
// helpers and every live process under them, the pods' included, by pid:
// for a procfs.CPUTracker, which counts a process that appeared from zero
// and one that went away as having spent nothing more.
func (t *Target) TreeCPU() (map[int]time.Duration, error) {
	pids, err := t.PIDs()
	if err != nil {
		return nil, err
	}
	tree, err := procfs.WithDescendants(pids)
	if err != nil {
		return nil, err
	}
	return procfs.CPUOf(tree), nil
}

// HelperUsage returns what the helpers named comm (/proc/<pid>/comm) hold;
// Procs is 0 when none runs.
func (t *Target) HelperUsage(comm string) (procfs.Usage, error) {
	pids, err := t.PIDs()
	if err != nil {
		return procfs.Usage{}, err
	}
	var named []int
	for _, pid := range pids[1:] {
		if procfs.Comm(pid) == comm {
			named = append(named, pid)
		}
	}
	return procfs.Sum(named)
}

// Usage returns what the daemon alone, and the daemon with its helpers, hold.
func (t *Target) Usage() (daemon, all procfs.Usage, err error) {
	pids, err := t.PIDs()
	if err != nil {
		return daemon, all, err
	}
	if daemon, err = procfs.Read(t.DaemonPID); err != nil {
		return daemon, all, fmt.Errorf("%s daemon pid %d: %w", t.Name, t.DaemonPID, err)
	}
	all, err = procfs.Sum(pids)
	return daemon, all, err
}
