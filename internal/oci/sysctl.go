package oci

import (
	"fmt"
	"slices"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

var ipcSysctls = []string{
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
}

// checkSysctls accepts only namespaced sysctls, and only when the namespace
// they live in is the pod's own: IPC ones (kernel.shm*, kernel.msg*,
// kernel.sem, fs.mqueue.*) need a pod IPC namespace, net.* a pod network
// namespace. Anything else would change the node.
func checkSysctls(sysctls map[string]string, hostNet, hostIPC bool) error {
	for k, v := range sysctls {
		if hasNUL(k) || hasNUL(v) {
			return fmt.Errorf("sysctl %q: NUL byte in name or value: %w", k, errdefs.ErrInvalidArgument)
		}
		name := dotted(k)
		switch {
		case slices.Contains(ipcSysctls, name) || strings.HasPrefix(name, "fs.mqueue."):
			if hostIPC {
				return fmt.Errorf("sysctl %q cannot be set in a pod using the host IPC namespace: %w", k, errdefs.ErrInvalidArgument)
			}
		case strings.HasPrefix(name, "net."):
			if hostNet {
				return fmt.Errorf("sysctl %q cannot be set in a pod using the host network: %w", k, errdefs.ErrInvalidArgument)
			}
		default:
			return fmt.Errorf("sysctl %q is not namespaced (only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and net.* are): %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// dotted turns a sysctl written with '/' separators ("net/ipv4/ip_forward",
// as sysctl(8) allows) into the dotted form; with '/' separators a '.' is
// part of a component (an interface name like eth0.100).
func dotted(s string) string {
	i := strings.IndexAny(s, "./")
	if i < 0 || s[i] == '.' {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, s)
}
