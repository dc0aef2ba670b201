package network

import (
	"context"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec runs CNI plugins as libcni's default does, with GOMAXPROCS=1
// in their environment. The reference plugins, and most others, are Go
// programs doing serial work (netlink requests, an IPAM lease, iptables
// execs), started once or twice per plugin at every pod start and
// teardown; the Go runtime sets up one P per CPU before main runs, which
// costs more the larger the node: `CNI_COMMAND=VERSION perf stat -r 30
// /usr/lib/cni/bridge`, task-clock 7.8 ms with GOMAXPROCS=1, 8.8 with 2,
// 12.9 with 64 (host-local, portmap and bandwidth alike). A plugin that
// runs another (bridge its IPAM plugin) passes its environment on.
type pluginExec struct {
	*invoke.DefaultExec
}

// PluginExec is the invoke.Exec berthd runs CNI plugins with (see
// pluginExec); the benchmark's CNI floor runs them with it too.
func PluginExec() invoke.Exec {
	return pluginExec{&invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	}}
}

func (e pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	return e.DefaultExec.ExecPlugin(ctx, pluginPath, stdinData, oneProc(environ))
}

// oneProc is environ with GOMAXPROCS=1 in place of any GOMAXPROCS it has.
func oneProc(environ []string) []string {
	out := slices.DeleteFunc(slices.Clone(environ), func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") })
	return append(out, "GOMAXPROCS=1")
}

// newCNI is libcni over dirs with the plugins run by pluginExec.
func newCNI(dirs []string, cacheDir string) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(dirs, cacheDir, PluginExec())
}
