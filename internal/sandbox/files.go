package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/atomicfile"
)

// Files are the per-pod files every container of the pod shares, prepared
// once at RunPodSandbox under the pod's state directory. A container skips
// each of them that a CRI mount already targets (kubelet supplies its own
// /etc/hosts, for one).
type Files struct {
	Hostname   string // file holding the pod hostname, for /etc/hostname
	Hosts      string // for /etc/hosts
	ResolvConf string // for /etc/resolv.conf
	Shm        string // for /dev/shm: a tmpfs per pod, or the host's with host IPC
}

// ShmSize is the size of a pod's /dev/shm, as docker and containerd give it.
const ShmSize = 64 << 20

// HostFiles are the host's files copied into host-network pods and used as
// defaults; tests point them elsewhere.
type HostFiles struct {
	Hosts      string
	ResolvConf string
	Shm        string
}

// DefaultHostFiles are the real host's.
var DefaultHostFiles = HostFiles{Hosts: "/etc/hosts", ResolvConf: "/etc/resolv.conf", Shm: "/dev/shm"}

// PrepareFiles writes the pod's files into dir (created) and mounts its
// /dev/shm. On error, whatever it made is removed again by CleanupFiles.
func PrepareFiles(dir string, cfg *runtimeapi.PodSandboxConfig, host HostFiles) (Files, error) {
	f := Files{
		Hostname:   filepath.Join(dir, "hostname"),
		Hosts:      filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Shm:        filepath.Join(dir, "shm"),
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNetwork := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE

	hostname := cfg.GetHostname()
	if hostNetwork || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return Files{}, fmt.Errorf("pod files: hostname: %w", err)
		}
		if hostname == "" || hostNetwork {
			hostname = h
		}
	}
	if err := atomicfile.WriteVolatile(f.Hostname, []byte(hostname+"\n"), 0o644); err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}

	hosts := []byte(defaultHosts)
	if hostNetwork {
		b, err := os.ReadFile(host.Hosts)
		if err != nil {
			return Files{}, fmt.Errorf("pod files: copy host %s: %w", host.Hosts, err)
		}
		hosts = b
	}
	if err := atomicfile.WriteVolatile(f.Hosts, hosts, 0o644); err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}

	resolv, err := resolvConf(cfg.GetDnsConfig(), host.ResolvConf)
	if err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}
	if err := atomicfile.WriteVolatile(f.ResolvConf, resolv, 0o644); err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}

	if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
		f.Shm = host.Shm
		return f, nil
	}
	if err := os.MkdirAll(f.Shm, 0o755); err != nil {
		return Files{}, fmt.Errorf("pod files: %w", err)
	}
	if err := unix.Mount("shm", f.Shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", ShmSize)); err != nil {
		return Files{}, fmt.Errorf("pod files: mount /dev/shm: %w", err)
	}
	return f, nil
}

// CleanupFiles unmounts the pod's /dev/shm and removes dir. Idempotent.
func CleanupFiles(dir string) error {
	shm := filepath.Join(dir, "shm")
	if err := unix.Unmount(shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", shm, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod files: %w", err)
	}
	return nil
}

const defaultHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
`

// resolvConf renders the CRI DNS config; with none, the host's file is
// used, as kubelet expects of a pod with dnsPolicy Default.
func resolvConf(dns *runtimeapi.DNSConfig, hostResolv string) ([]byte, error) {
	if dns == nil || len(dns.Servers)+len(dns.Searches)+len(dns.Options) == 0 {
		b, err := os.ReadFile(hostResolv)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("copy host %s: %w", hostResolv, err)
		}
		return b, nil
	}
	var b strings.Builder
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return []byte(b.String()), nil
}
