package network

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/netns"
)

// rollbackTimeout bounds the DELs that undo a failed Setup. They run even when
// the caller's context is done (kubelet's deadline passing is a common reason
// for a Setup to fail), or the pod's IP and iptables rules would leak.
const rollbackTimeout = time.Minute

// attachment is one network a pod is (or may be) attached to.
type attachment struct {
	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
}

// Setup brings the pod's loopback up and attaches its network namespace to the loaded
// networks (eth0 for the default one, eth1... for more when PluginMaxConfNum
// allows), and returns the pod's addresses. On failure, everything attached
// is detached again (and DEL is also sent for the network whose ADD failed,
// as the CNI spec asks) before Setup returns. The caller serialises Setup
// and Teardown of one pod.
func (m *Manager) Setup(ctx context.Context, p Pod) (Result, error) {
	if err := p.validate(); err != nil {
		return Result{}, err
	}
	nets, ipRanges, err := m.snapshot()
	if err != nil {
		return Result{}, err
	}
	args, caps := p.cniArgs(), p.capabilityArgs(ipRanges)

	// Loopback goes up here, not through the loopback plugin: all that
	// plugin does is set lo up (its result is not used), and its exec, a Go
	// program started for one ioctl, cost a pod start about 4% of its CPU
	// (docs/architecture.md, "Where a pod start's CPU goes"). Nothing to
	// undo: lo goes with the namespace.
	if err := upLoopback(p.NetNS); err != nil {
		return Result{}, fmt.Errorf("bring up loopback of pod %s: %w", p.ID, err)
	}

	var res Result
	var tried []attachment
	var addErr error
	for i, n := range nets {
		a := attachment{n, m.runtimeConf(p.ID, p.NetNS, fmt.Sprintf("eth%d", i), args, caps)}
		tried = append(tried, a)
		r, err := m.cni.Load().AddNetworkList(ctx, a.list, a.rt)
		if err == nil {
			var r100 *types100.Result
			if r100, err = types100.NewResultFromResult(r); err == nil {
				res.Raw = append(res.Raw, r100)
				if i == 0 {
					res.IPs, res.Interface = podIPs(r100), a.rt.IfName
				}
			}
		}
		if err != nil {
			addErr = fmt.Errorf("add pod %s to network %q: %w", p.ID, n.Name, err)
			break
		}
	}
	if addErr == nil && len(res.IPs) == 0 {
		addErr = fmt.Errorf("network %q gave pod %s no address", nets[0].Name, p.ID)
	}
	if addErr != nil {
		m.rollback(ctx, p.ID, tried)
		return Result{}, addErr
	}
	return res, nil
}

// rollback detaches tried networks, last first, logging what fails: the
// Setup error is what the caller must see.
func (m *Manager) rollback(ctx context.Context, podID string, tried []attachment) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	for i := len(tried) - 1; i >= 0; i-- {
		a := tried[i]
		if err := m.del(ctx, a); err != nil {
			logctx.G(ctx, m.log).WithError(err).Warnf("undo network %q of pod %s after failed setup", a.list.Name, podID)
		}
	}
}

// Teardown detaches the pod from its networks (CNI DEL), the default network
// last but before loopback. It uses the config and arguments cached at ADD
// when libcni has them, so a config changed or removed since then still
// tears down what was set up; otherwise the current config and p.
//
// Teardown is idempotent and tolerates a network namespace that is gone or
// no longer pinned (CNI DEL must succeed best-effort): the plugins are then
// called without a netns and free what lives outside it (IP allocations,
// host-side rules; releaseOrphanMasq removes what the bridge plugin cannot
// find without the namespace). Still, call it before removing the namespace.
func (m *Manager) Teardown(ctx context.Context, p Pod) error {
	if p.ID == "" {
		return fmt.Errorf("pod network teardown needs an id: %w", errdefs.ErrInvalidArgument)
	}
	var errs []error
	for _, a := range m.teardownPlan(ctx, p) {
		if err := m.del(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s from network %q: %w", p.ID, a.list.Name, err))
			continue
		}
		if a.rt.NetNS == "" && a.rt.IfName != "lo" {
			m.releaseOrphanMasq(ctx, a.list.Name, p.ID)
		}
	}
	return errors.Join(errs...)
}

// del sends DEL for one network. libcni stops a list at the first plugin
// whose DEL fails, which would leave the plugins before it (the IP, the veth)
// in place for ever if that failure is permanent (a plugin refusing the
// pod's arguments). So on failure each plugin gets its own DEL, last first,
// and the error is still returned for the caller to retry.
func (m *Manager) del(ctx context.Context, a attachment) error {
	err := m.cni.Load().DelNetworkList(ctx, a.list, a.rt)
	if err == nil || len(a.list.Plugins) < 2 {
		return err
	}
	for i := len(a.list.Plugins) - 1; i >= 0; i-- {
		one := *a.list
		one.Plugins = a.list.Plugins[i : i+1]
		if perr := m.cni.Load().DelNetworkList(ctx, &one, a.rt); perr != nil {
			logctx.G(ctx, m.log).WithError(perr).Debugf("DEL of network %q, plugin %d", a.list.Name, i)
		}
	}
	return err
}

// teardownPlan lists the DELs for p in order.
func (m *Manager) teardownPlan(ctx context.Context, p Pod) []attachment {
	cached, err := m.cni.Load().GetCachedAttachments(p.ID)
	if err != nil {
		logctx.G(ctx, m.log).WithError(err).Warnf("read CNI cache of pod %s; tearing down with the current config", p.ID)
	}
	m.mu.RLock()
	current, ipRanges := m.networks, m.ipRanges
	m.mu.RUnlock()

	var plan []attachment
	for _, c := range cached {
		list := cachedList(c, current)
		if list == nil {
			logctx.G(ctx, m.log).Warnf("CNI cache of pod %s has an unusable config for network %q; skipping it", p.ID, c.Network)
			continue
		}
		path := p.NetNS
		if path == "" {
			path = c.NetNS
		}
		plan = append(plan, attachment{list, m.runtimeConf(p.ID, usableNetNS(path), c.IfName, c.CniArgs, c.CapabilityArgs)})
	}
	if len(plan) == 0 {
		// Nothing cached: a cache lost, or a second Teardown. DEL with what
		// we know now; plugins treat unknown ids as already deleted.
		path := usableNetNS(p.NetNS)
		args, caps := p.cniArgs(), p.capabilityArgs(ipRanges)
		for i, n := range current {
			plan = append(plan, attachment{n, m.runtimeConf(p.ID, path, fmt.Sprintf("eth%d", i), args, caps)})
		}
	}
	// Loopback last (cached for pods set up by a berthd that ran the
	// loopback plugin), then highest interface first: the reverse of Setup.
	sort.SliceStable(plan, func(i, j int) bool {
		li, lj := plan[i].rt.IfName == "lo", plan[j].rt.IfName == "lo"
		if li != lj {
			return lj
		}
		return plan[i].rt.IfName > plan[j].rt.IfName
	})
	return plan
}

// cachedList is the network config a cached attachment was added with; if
// it cannot be used (its plugins lived in files beside the list), the loaded
// network of the same name.
func cachedList(c *libcni.NetworkAttachment, current []*libcni.NetworkConfigList) *libcni.NetworkConfigList {
	if list, err := libcni.ConfListFromBytes(c.Config); err == nil && len(list.Plugins) > 0 {
		return list
	}
	for _, n := range current {
		if n.Name == c.Network {
			return n
		}
	}
	return nil
}

// usableNetNS is path if it still holds a network namespace, else "": CNI
// plugins skip the in-namespace part of DEL for an empty netns but fail on a
// path that is not a namespace (a pin file left unmounted by a reboot).
func usableNetNS(path string) string {
	if path == "" {
		return ""
	}
	if ok, err := netns.Pinned(path); err != nil || !ok {
		return ""
	}
	return path
}

func (m *Manager) runtimeConf(id, netnsPath, ifName string, args [][2]string, caps map[string]any) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    id,
		NetNS:          netnsPath,
		IfName:         ifName,
		Args:           args,
		CapabilityArgs: caps,
	}
}

// upLoopback sets lo up in the network namespace at path, as the CNI
// loopback plugin's ADD does. The socket the ioctls go through belongs to
// the namespace it was made in.
func upLoopback(path string) error {
	return netns.Do(path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if errors.Is(err, unix.EAFNOSUPPORT) {
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		}
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("get lo flags: %w", err)
		}
		flags := ifr.Uint16()
		if flags&unix.IFF_UP != 0 {
			return nil
		}
		ifr.SetUint16(flags | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
}
