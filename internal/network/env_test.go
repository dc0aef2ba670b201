package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/testsupport"
)

// env is a private CNI network for one test: the sample conflist from
// hack/cni with its own network name, bridge, /24 and host-local dataDir.
type env struct {
	t       *testing.T
	m       *Manager
	confDir string
	netnsDn string
	dataDir string
	netName string
	bridge  string
	subnet  *net.IPNet
	gateway net.IP
}

func newEnv(t *testing.T, edit func(conf map[string]any)) *env {
	t.Helper()
	testsupport.Require(t, os.Geteuid() == 0, "needs root")
	_, err := os.Stat("/usr/lib/cni/bridge")
	testsupport.Require(t, err == nil, "needs the CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)")
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(rnd[:])
	e := &env{
		t:       t,
		confDir: t.TempDir(),
		netnsDn: filepath.Join(t.TempDir(), "netns"),
		dataDir: filepath.Join(t.TempDir(), "networks"),
		netName: "berth-test-" + suffix,
		bridge:  "bt" + suffix,
	}
	_, e.subnet, _ = net.ParseCIDR(fmt.Sprintf("10.86.%d.0/24", rnd[0]))
	e.gateway = net.IPv4(10, 86, rnd[0], 1).To4()

	raw, err := os.ReadFile("../../hack/cni/10-berth-bridge.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	conf["name"] = e.netName
	bridge := conf["plugins"].([]any)[0].(map[string]any)
	bridge["bridge"] = e.bridge
	ipam := bridge["ipam"].(map[string]any)
	ipam["ranges"] = []any{[]any{map[string]any{"subnet": e.subnet.String()}}}
	ipam["dataDir"] = e.dataDir
	if edit != nil {
		edit(conf)
	}
	out, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.confDir, "10-test.conflist", string(out))

	e.m = newTestManager(t, e.confDir, 1)
	if ready, _, msg := e.m.Status(); !ready {
		t.Fatalf("network not ready: %s", msg)
	}
	t.Cleanup(func() {
		// Pods are torn down by their own cleanups (registered later, so
		// run earlier); what remains is the bridge and the pin dir mount.
		_ = exec.Command("ip", "link", "del", e.bridge).Run()
		for unix.Unmount(e.netnsDn, unix.MNT_DETACH) == nil {
		}
	})
	return e
}

// newPod makes a pinned netns for a pod; cleanup tears it all down even when
// the test fails half-way.
func (e *env) newPod(name string) Pod {
	e.t.Helper()
	id := fmt.Sprintf("%x", time.Now().UnixNano()) + name
	path, err := netns.New(e.netnsDn, id)
	if err != nil {
		e.t.Fatal(err)
	}
	p := Pod{ID: id, Name: name, Namespace: "default", UID: "uid-" + id, NetNS: path}
	e.t.Cleanup(func() {
		if err := e.m.Teardown(context.Background(), p); err != nil {
			e.t.Errorf("cleanup teardown: %v", err)
		}
		_ = netns.Remove(path)
	})
	return p
}

// allocated lists host-local's allocation files of the test network.
func (e *env) allocated() []string {
	entries, _ := os.ReadDir(filepath.Join(e.dataDir, e.netName))
	var ips []string
	for _, en := range entries {
		if net.ParseIP(en.Name()) != nil {
			ips = append(ips, en.Name())
		}
	}
	return ips
}

// bridgePorts lists the veths attached to the test bridge.
func (e *env) bridgePorts() []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", e.bridge, "brif"))
	var ports []string
	for _, en := range entries {
		ports = append(ports, en.Name())
	}
	return ports
}

// natRules lists the iptables nat rules that mention the test network (the
// CNI plugins put the network name in every rule's comment).
func (e *env) natRules() []string {
	e.t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		e.t.Fatalf("iptables -S: %v: %s", err, out)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, e.netName) {
			rules = append(rules, l)
		}
	}
	return rules
}

// countVeths counts the veths on bridge: the host ends of this test's pods.
// Not every veth of the host: tests of other packages, run at the same
// time, make and remove their own. A bridge not made yet has none.
func countVeths(t *testing.T, bridge string) int {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); os.IsNotExist(err) {
		return 0
	}
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge, "type", "veth").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "\n")
}
