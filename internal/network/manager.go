// Package network attaches pod network namespaces to CNI networks through
// libcni: the default network (the first config in the conf dir, as
// containerd picks it), with the Kubernetes CNI_ARGS and the portMappings,
// bandwidth and ipRanges capabilities. Loopback is brought up in-process
// (upLoopback), not by the loopback plugin.
package network

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Options configures a Manager.
type Options struct {
	ConfDir  string   // network configs, e.g. /etc/cni/net.d
	BinDirs  []string // plugin binaries, searched in order, e.g. /opt/cni/bin, /usr/lib/cni
	CacheDir string   // libcni's cache of ADD results and configs, under berthd's state dir
	// PluginMaxConfNum is how many networks each pod joins, taken from the
	// conf dir in lexical order: 1 is only the default network; 0 or less is
	// every valid config (containerd's max_conf_num has the same meaning).
	PluginMaxConfNum int
}

// Manager sets up and tears down pod networks. It is safe for concurrent use.
type Manager struct {
	opts Options
	log  logrus.FieldLogger
	// cni execs the plugins; SetBinDirs swaps it whole, so an operation in
	// flight finishes with the plugin dirs it started with.
	cni atomic.Pointer[libcni.CNIConfig]
	// watchEvery is Watch's poll interval (watchInterval; shorter in tests).
	watchEvery time.Duration

	mu sync.RWMutex // guards the fields below
	// networks are the loaded configs, default network first; empty when
	// loadErr is set.
	networks []*libcni.NetworkConfigList
	loadErr  error
	// loadedFrom is the conf dir's fingerprint when networks were read.
	loadedFrom string
	ipRanges   [][]map[string]string // ipRanges capability from the pod CIDR; nil when unset
}

// New returns a Manager with the configs found in opts.ConfDir now. A missing
// or empty conf dir is not an error: the Manager is then not ready (Status)
// until Watch sees a config.
func New(opts Options, log logrus.FieldLogger) (*Manager, error) {
	if opts.ConfDir == "" || len(opts.BinDirs) == 0 || opts.CacheDir == "" {
		return nil, fmt.Errorf("network options need ConfDir, BinDirs and CacheDir: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create CNI cache dir: %w", err)
	}
	m := &Manager{
		opts: opts,
		log:  log,

		watchEvery: watchInterval,
	}
	m.cni.Store(newCNI(opts.BinDirs, opts.CacheDir))
	m.reload()
	return m, nil
}

// SetBinDirs changes where plugin binaries are searched (cni.bin_dirs on a
// reload), for operations started from now on. Watch then sees the new dirs
// in its fingerprint and re-validates the network configs against them.
func (m *Manager) SetBinDirs(dirs []string) error {
	if len(dirs) == 0 {
		return fmt.Errorf("CNI plugin dirs must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	m.cni.Store(newCNI(slices.Clone(dirs), m.opts.CacheDir))
	return nil
}

// Status reports whether a valid network config is loaded, for the CRI
// NetworkReady condition. When not ready, reason and message say why in the
// words kubelet shows in its node condition.
func (m *Manager) Status() (ready bool, reason, message string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.loadErr != nil {
		return false, "NetworkPluginNotReady", "Network plugin returns error: cni config load failed: " + m.loadErr.Error()
	}
	return true, "", ""
}

// SetPodCIDR records the node's pod CIDR (CRI UpdateRuntimeConfig; dual-stack
// CIDRs are comma-separated). Plugins that declare the ipRanges capability,
// such as host-local through bridge, allocate from it for pods set up later.
// An empty cidr clears it; an invalid part is logged and skipped.
func (m *Manager) SetPodCIDR(cidr string) {
	var ranges [][]map[string]string
	for _, c := range strings.Split(cidr, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(c); err != nil {
			m.log.WithError(err).Warnf("ignoring invalid pod CIDR %q", c)
			continue
		}
		// Each CIDR is its own range set, so a dual-stack pod gets one
		// address of each family.
		ranges = append(ranges, []map[string]string{{"subnet": c}})
	}
	m.mu.Lock()
	m.ipRanges = ranges
	m.mu.Unlock()
}

// snapshot returns what a Setup needs, consistently.
func (m *Manager) snapshot() ([]*libcni.NetworkConfigList, [][]map[string]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.loadErr != nil {
		return nil, nil, fmt.Errorf("network plugin not ready: cni config load failed: %v: %w", m.loadErr, errdefs.ErrUnavailable)
	}
	return m.networks, m.ipRanges, nil
}
