package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestPrepareFiles(t *testing.T) {
	hostDir := t.TempDir()
	host := HostFiles{Hosts: filepath.Join(hostDir, "hosts"), ResolvConf: filepath.Join(hostDir, "resolv.conf"), Shm: "/dev/shm"}
	os.WriteFile(host.Hosts, []byte("10.0.0.1 node\n"), 0o644)
	os.WriteFile(host.ResolvConf, []byte("nameserver 192.0.2.53\n"), 0o644)
	hostname, _ := os.Hostname()

	mode := func(net, ipc runtimeapi.NamespaceMode) *runtimeapi.LinuxPodSandboxConfig {
		return &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: net, Ipc: ipc}}}
	}
	for _, tc := range []struct {
		name                                string
		cfg                                 *runtimeapi.PodSandboxConfig
		wantHostname, wantHosts, wantResolv string
		wantHostShm                         bool
	}{
		{
			name: "pod network with DNS config",
			cfg: &runtimeapi.PodSandboxConfig{Hostname: "web-0", Linux: mode(runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD),
				DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}},
			wantHostname: "web-0\n", wantHosts: "127.0.0.1\tlocalhost",
			wantResolv: "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
		},
		{
			name:         "no DNS config copies the host's",
			cfg:          &runtimeapi.PodSandboxConfig{Hostname: "a"},
			wantHostname: "a\n", wantHosts: "localhost", wantResolv: "nameserver 192.0.2.53\n",
		},
		{
			name:         "host network and IPC use the host's",
			cfg:          &runtimeapi.PodSandboxConfig{Hostname: "ignored", Linux: mode(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE)},
			wantHostname: hostname + "\n", wantHosts: "10.0.0.1 node", wantResolv: "nameserver 192.0.2.53\n", wantHostShm: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testsupport.Require(t, tc.wantHostShm || os.Geteuid() == 0, "mounting a pod's /dev/shm needs root")
			dir := filepath.Join(t.TempDir(), "pod")
			f, err := PrepareFiles(dir, tc.cfg, host)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := CleanupFiles(dir); err != nil {
					t.Error(err)
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Error("pod dir left behind")
				}
			})
			read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
			if got := read(f.Hostname); got != tc.wantHostname {
				t.Errorf("hostname %q, want %q", got, tc.wantHostname)
			}
			if got := read(f.Hosts); !strings.Contains(got, tc.wantHosts) {
				t.Errorf("hosts %q lacks %q", got, tc.wantHosts)
			}
			if got := read(f.ResolvConf); got != tc.wantResolv {
				t.Errorf("resolv.conf %q, want %q", got, tc.wantResolv)
			}
			if tc.wantHostShm != (f.Shm == "/dev/shm") {
				t.Errorf("shm %q", f.Shm)
			}
			if !tc.wantHostShm {
				mounts, _ := os.ReadFile("/proc/self/mountinfo")
				if !strings.Contains(string(mounts), f.Shm+" ") {
					t.Errorf("no tmpfs mounted at %s", f.Shm)
				}
			}
		})
	}
}
