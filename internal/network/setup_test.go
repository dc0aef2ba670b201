package network

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/testsupport"
)

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// echoOnce answers one connection on l with what it reads up to a newline.
func echoOnce(l net.Listener) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	_, _ = io.WriteString(c, line)
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "ping\n" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

func TestSetupTeardown(t *testing.T) {
	e := newEnv(t, nil)
	p := e.newPod("web")
	const containerPort = 8080
	hostPort := freePort(t)
	p.PortMappings = []PortMapping{{HostPort: hostPort, ContainerPort: containerPort, Protocol: "TCP", HostIP: "127.0.0.1"}}

	res, err := e.m.Setup(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || !e.subnet.Contains(res.IPs[0]) || res.Interface != "eth0" {
		t.Fatalf("Setup = %v on %q, want one IP in %s on eth0", res.IPs, res.Interface, e.subnet)
	}
	if got := e.allocated(); len(got) != 1 || got[0] != res.IPs[0].String() {
		t.Fatalf("host-local allocations = %v, want [%s]", got, res.IPs[0])
	}
	if got := e.bridgePorts(); len(got) != 1 {
		t.Fatalf("bridge %s ports = %v, want one veth", e.bridge, got)
	}

	t.Run("gateway reachable from pod", func(t *testing.T) {
		l, err := net.Listen("tcp", net.JoinHostPort(e.gateway.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go echoOnce(l)
		err = netns.Do(p.NetNS, func() error {
			c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
			if err != nil {
				return err
			}
			roundTrip(t, c)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("loopback up in pod", func(t *testing.T) {
		err := netns.Do(p.NetNS, func() error {
			lo, err := net.InterfaceByName("lo")
			if err != nil {
				return err
			}
			if lo.Flags&net.FlagUp == 0 {
				t.Error("lo is down")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("host port on 127.0.0.1", func(t *testing.T) {
		// The listener is created in the pod's namespace; accepting on it
		// from any thread is fine once it exists.
		var l net.Listener
		err := netns.Do(p.NetNS, func() (err error) {
			l, err = net.Listen("tcp", ":"+strconv.Itoa(containerPort))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go echoOnce(l)
		// DNAT of 127.0.0.1 towards the pod needs route_localnet on the
		// bridge; portmap sets it (it is off by default).
		if v, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + e.bridge + "/route_localnet"); strings.TrimSpace(string(v)) != "1" {
			t.Errorf("route_localnet on %s = %q, want 1", e.bridge, v)
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hostPort))), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
	})

	if len(e.natRules()) == 0 {
		t.Fatal("no iptables nat rules for the network (ipMasq, portmap)")
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := e.m.Teardown(t.Context(), p); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
		if got := e.allocated(); len(got) != 0 {
			t.Fatalf("allocations after Teardown = %v", got)
		}
		if got := e.bridgePorts(); len(got) != 0 {
			t.Fatalf("bridge ports after Teardown = %v", got)
		}
		if got := e.natRules(); len(got) != 0 {
			t.Fatalf("nat rules after Teardown:\n%s", strings.Join(got, "\n"))
		}
	}
	if err := netns.Remove(p.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Teardown(t.Context(), p); err != nil {
		t.Fatalf("Teardown after netns removal: %v", err)
	}
}

// A pod whose netns is gone before Teardown (removed by hand, or left
// unmounted by a reboot) still gets its IP and host rules released.
func TestTeardownWithoutNetns(t *testing.T) {
	e := newEnv(t, nil)
	p := e.newPod("gone")
	p.PortMappings = []PortMapping{{HostPort: freePort(t), ContainerPort: 80, Protocol: "tcp"}}
	if _, err := e.m.Setup(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if err := netns.Remove(p.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Teardown(t.Context(), p); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if got := e.allocated(); len(got) != 0 {
		t.Fatalf("allocations after Teardown = %v", got)
	}
	// The kernel removes the veth pair with the namespace; its freeing is
	// asynchronous.
	testsupport.PollUntil(t, "veth to go", 10*time.Second, func() bool { return len(e.bridgePorts()) == 0 })
	if got := e.natRules(); len(got) != 0 {
		t.Fatalf("nat rules left after Teardown without netns:\n%s", strings.Join(got, "\n"))
	}
}

func TestBandwidth(t *testing.T) {
	e := newEnv(t, nil)
	p := e.newPod("slow")
	bw, err := ParseBandwidth(map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "20M"})
	if err != nil {
		t.Fatal(err)
	}
	p.Bandwidth = bw
	res, err := e.m.Setup(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	// The host-side veth carries the ingress limit as a tbf qdisc.
	var hostVeth string
	for _, i := range res.Raw[0].Interfaces {
		if i.Sandbox == "" && i.Name != e.bridge && !strings.HasPrefix(i.Name, "bwp") {
			hostVeth = i.Name
		}
	}
	out, err := exec.Command("tc", "qdisc", "show", "dev", hostVeth).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "10Mbit") {
		t.Fatalf("tc qdisc on %s: %v: %s", hostVeth, err, out)
	}
	if err := e.m.Teardown(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("ip", "-o", "link").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, hostVeth) || strings.Contains(l, "bwp") {
			t.Fatalf("link left after Teardown: %s", l)
		}
	}
}

// SetPodCIDR reaches host-local through the ipRanges capability.
func TestPodCIDR(t *testing.T) {
	e := newEnv(t, func(conf map[string]any) {
		bridge := conf["plugins"].([]any)[0].(map[string]any)
		bridge["capabilities"] = map[string]any{"ipRanges": true}
		delete(bridge["ipam"].(map[string]any), "ranges")
	})
	e.m.SetPodCIDR(e.subnet.String() + ", not-a-cidr")
	p := e.newPod("cidr")
	res, err := e.m.Setup(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || !e.subnet.Contains(res.IPs[0]) {
		t.Fatalf("IPs = %v, want one in the pod CIDR %s", res.IPs, e.subnet)
	}
}

// A failed ADD leaves nothing behind: here the last plugin (bandwidth)
// refuses a rate without a burst, after bridge, host-local and portmap have
// done their part.
func TestSetupRollback(t *testing.T) {
	e := newEnv(t, nil)
	p := e.newPod("fail")
	p.PortMappings = []PortMapping{{HostPort: freePort(t), ContainerPort: 80, Protocol: "tcp"}}
	p.Bandwidth = &Bandwidth{IngressRate: 1_000_000}
	if _, err := e.m.Setup(t.Context(), p); err == nil || !strings.Contains(err.Error(), "bandwidth") {
		t.Fatalf("Setup = %v, want the bandwidth plugin's error", err)
	}
	if got := e.allocated(); len(got) != 0 {
		t.Fatalf("allocations after failed Setup = %v", got)
	}
	if got := e.bridgePorts(); len(got) != 0 {
		t.Fatalf("bridge ports after failed Setup = %v", got)
	}
	if got := e.natRules(); len(got) != 0 {
		t.Fatalf("nat rules after failed Setup:\n%s", strings.Join(got, "\n"))
	}
}
