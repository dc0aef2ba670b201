package stats

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/testsupport"
)

// twoNetns pins two fresh network namespaces joined by a veth pair: eth0 in
// a (10.250.0.1/30) and peer0 in b (10.250.0.2/30). Nothing leaves them.
func twoNetns(t *testing.T) (a, b string) {
	t.Helper()
	testsupport.Require(t, os.Geteuid() == 0, "needs root")
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		ids, _ := netns.List(dir)
		for _, id := range ids {
			_ = netns.Remove(filepath.Join(dir, id))
		}
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
	var err error
	if a, err = netns.New(dir, "a"); err != nil {
		t.Fatal(err)
	}
	if b, err = netns.New(dir, "b"); err != nil {
		t.Fatal(err)
	}
	bFile, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer bFile.Close()
	up := func(name, cidr string) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	}
	err = netns.Do(a, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		peer, err := netlink.LinkByName("peer0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(bFile.Fd())); err != nil {
			return fmt.Errorf("move peer: %w", err)
		}
		return up("eth0", "10.250.0.1/30")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Do(b, func() error { return up("peer0", "10.250.0.2/30") }); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestReadNetwork(t *testing.T) {
	a, b := twoNetns(t)
	before, err := ReadNetwork(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Interfaces) != 1 || before.Interfaces[0].Name != "eth0" {
		t.Fatalf("interfaces of a = %+v, want eth0 only (no lo)", before.Interfaces)
	}
	if _, ok := before.Default(); !ok {
		t.Fatal("no default interface")
	}

	const packets, size = 20, 1000
	err = netns.Do(a, func() error {
		conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 250, 0, 2), Port: 9})
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, size)
		for range packets {
			// The first packets may wait for ARP, or be refused after an
			// ICMP unreachable comes back: counters move either way.
			_, _ = conn.Write(buf)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, func() error {
		na, err := ReadNetwork(a)
		if err != nil {
			return err
		}
		nb, err := ReadNetwork(b)
		if err != nil {
			return err
		}
		ea, _ := na.Default()
		if ea.TxBytes < before.Interfaces[0].TxBytes+size {
			return fmt.Errorf("eth0 in a: tx %d bytes, want it to grow by at least %d", ea.TxBytes, size)
		}
		if len(nb.Interfaces) != 1 || nb.Interfaces[0].Name != "peer0" || nb.Interfaces[0].RxBytes < size {
			return fmt.Errorf("b: %+v, want peer0 receiving", nb.Interfaces)
		}
		if _, ok := nb.Default(); ok {
			return fmt.Errorf("b has no eth0 but Default found one")
		}
		return nil
	})
}

func TestReadNetworkMissing(t *testing.T) {
	if _, err := ReadNetwork(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("no error for a missing namespace")
	}
}
