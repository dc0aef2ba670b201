package network

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// confExtensions are the config file kinds read from the conf dir, as
// containerd and CRI-O read them.
var confExtensions = []string{".conf", ".conflist", ".json"}

// reload reads the conf dir and replaces the loaded networks.
func (m *Manager) reload() {
	// Validation runs each plugin binary's VERSION command; bound it so a
	// hung binary cannot stall Watch.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Taken before reading, so that a change made during the load shows as
	// a difference at Watch's next look.
	fp := m.fingerprint()
	nets, err := m.load(ctx)

	m.mu.Lock()
	defer m.mu.Unlock()
	wasReady := m.loadErr == nil && len(m.networks) > 0
	m.networks, m.loadErr, m.loadedFrom = nets, err, fp
	switch {
	case err != nil && wasReady:
		m.log.WithError(err).Warn("CNI network config lost: network not ready")
	case err == nil:
		names := make([]string, len(nets))
		for i, n := range nets {
			names[i] = n.Name
		}
		m.log.Infof("CNI networks loaded from %s: %s", m.opts.ConfDir, strings.Join(names, ", "))
	}
}

// load returns up to PluginMaxConfNum networks from the conf dir in lexical
// file order.
//
// A file that does not parse as a CNI config is skipped with a warning, as
// CRI-O does (an editor's leftover must not take the node's network down).
// A file that parses but whose plugins are missing or too old is not
// skipped: it fails the load, so that while a CNI installer is still copying
// its binaries the node stays not ready instead of silently putting pods on
// a network from a later file.
func (m *Manager) load(ctx context.Context) ([]*libcni.NetworkConfigList, error) {
	dir := m.opts.ConfDir
	files, err := libcni.ConfFiles(dir, confExtensions) // a missing dir has none
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	sort.Strings(files)
	var nets []*libcni.NetworkConfigList
	var skipped []string
	for _, f := range files {
		list, err := loadFile(f)
		if err != nil {
			m.log.WithError(err).Warnf("skipping CNI config %s", f)
			skipped = append(skipped, filepath.Base(f))
			continue
		}
		if _, err := m.cni.Load().ValidateNetworkList(ctx, list); err != nil {
			return nil, fmt.Errorf("network %q in %s: %w", list.Name, f, err)
		}
		nets = append(nets, list)
		if m.opts.PluginMaxConfNum > 0 && len(nets) == m.opts.PluginMaxConfNum {
			break
		}
	}
	if len(nets) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no valid network config found in %s (skipped %s)", dir, strings.Join(skipped, ", "))
		}
		return nil, fmt.Errorf("no network config found in %s", dir)
	}
	return nets, nil
}

// loadFile reads one config file; a single-plugin .conf or .json is turned
// into a list of one.
func loadFile(path string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		list, err := libcni.ConfListFromFile(path)
		if err != nil {
			return nil, err
		}
		if len(list.Plugins) == 0 {
			return nil, errors.New("no plugins in list")
		}
		return list, nil
	}
	conf, err := libcni.ConfFromFile(path) //nolint:staticcheck // .conf files are still common in the field
	if err != nil {
		return nil, err
	}
	if conf.Network.Name == "" {
		return nil, errors.New("network config has no name")
	}
	return libcni.ConfListFromConf(conf) //nolint:staticcheck // as above
}
