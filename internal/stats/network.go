package stats

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-cri/berth/internal/netns"
)

// DefaultInterface is the pod interface CNI plugins create and kubelet
// reports as the pod's network.
const DefaultInterface = "eth0"

// Interface is the cumulative counters of one network interface.
type Interface struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
}

// Network is a pod's interfaces, loopback left out (cAdvisor leaves it out
// too: it is traffic inside the pod), sorted by name.
type Network struct {
	Time       time.Time
	Interfaces []Interface
}

// Default returns the DefaultInterface, if the pod has one.
func (n *Network) Default() (Interface, bool) {
	for _, i := range n.Interfaces {
		if i.Name == DefaultInterface {
			return i, true
		}
	}
	return Interface{}, false
}

// ReadNetwork reads the interface counters of the network namespace pinned
// at nsPath.
//
// It asks the kernel over rtnetlink from a thread inside the namespace: the
// netlink socket is bound to the namespace of the thread that opens it, and
// the link dump carries the same 64-bit counters as
// /sys/class/net/<if>/statistics. Reading sysfs instead would be wrong:
// sysfs shows the interfaces of the namespace it was mounted in (berthd's),
// whatever namespace the reading thread is in. /proc/<pid>/net/dev would
// need a process in the pod and a text parser; the pinned namespace needs
// neither, and works while the pause process is being restarted.
func ReadNetwork(nsPath string) (*Network, error) {
	var links []netlink.Link
	err := netns.Do(nsPath, func() error {
		var err error
		// Do runs this on its locked thread, so netlink's per-request socket
		// is opened inside the namespace.
		links, err = netlink.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// The link set changed during the dump; counters of the links
			// returned are still right, and the next call sees the rest.
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", nsPath, err)
	}
	n := &Network{Time: time.Now()}
	for _, l := range links {
		a := l.Attrs()
		if a == nil || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		i := Interface{Name: a.Name}
		if s := a.Statistics; s != nil {
			i.RxBytes, i.RxErrors, i.TxBytes, i.TxErrors = s.RxBytes, s.RxErrors, s.TxBytes, s.TxErrors
		}
		n.Interfaces = append(n.Interfaces, i)
	}
	sort.Slice(n.Interfaces, func(a, b int) bool { return n.Interfaces[a].Name < n.Interfaces[b].Name })
	return n, nil
}
