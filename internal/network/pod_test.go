package network

import (
	"errors"
	"net"
	"reflect"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestPodIPs(t *testing.T) {
	idx := func(i int) *int { return &i }
	ipc := func(cidr string, iface *int) *types100.IPConfig {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return &types100.IPConfig{Address: *n, Interface: iface}
	}
	ifaces := []*types100.Interface{{Name: "cni0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: "/run/netns/x"}}
	for _, tc := range []struct {
		name string
		ips  []*types100.IPConfig
		want []string
	}{
		{name: "v4", ips: []*types100.IPConfig{ipc("10.1.0.5/24", idx(2))}, want: []string{"10.1.0.5"}},
		{name: "v6 before v4 is reordered", ips: []*types100.IPConfig{ipc("fd00::5/64", idx(2)), ipc("10.1.0.5/24", idx(2))},
			want: []string{"10.1.0.5", "fd00::5"}},
		{name: "host side skipped", ips: []*types100.IPConfig{ipc("10.1.0.1/24", idx(0)), ipc("10.1.0.6/24", idx(2))},
			want: []string{"10.1.0.6"}},
		{name: "one per family", ips: []*types100.IPConfig{ipc("10.1.0.7/24", idx(2)), ipc("10.2.0.7/24", idx(2))},
			want: []string{"10.1.0.7"}},
		{name: "no interface index", ips: []*types100.IPConfig{ipc("10.1.0.8/24", nil)}, want: []string{"10.1.0.8"}},
		{name: "bad index", ips: []*types100.IPConfig{ipc("10.1.0.9/24", idx(7))}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, ip := range podIPs(&types100.Result{Interfaces: ifaces, IPs: tc.ips}) {
				got = append(got, ip.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCapabilityArgs(t *testing.T) {
	p := Pod{
		PortMappings: []PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
			{HostPort: 0, ContainerPort: 53, Protocol: "UDP"}, // no host port: not CNI's business
			{HostPort: 5353, ContainerPort: 53, Protocol: "", HostIP: "127.0.0.1"},
		},
		Bandwidth: &Bandwidth{IngressRate: 1000, IngressBurst: 1},
	}
	ranges := [][]map[string]string{{{"subnet": "10.9.0.0/24"}}}
	got := p.capabilityArgs(ranges)
	wantPM := []PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "tcp", HostIP: "127.0.0.1"},
	}
	if !reflect.DeepEqual(got["portMappings"], wantPM) {
		t.Errorf("portMappings = %+v, want %+v", got["portMappings"], wantPM)
	}
	if got["bandwidth"] != p.Bandwidth {
		t.Errorf("bandwidth = %v", got["bandwidth"])
	}
	if !reflect.DeepEqual(got["ipRanges"], ranges) {
		t.Errorf("ipRanges = %v", got["ipRanges"])
	}
	if empty := (Pod{}).capabilityArgs(nil); len(empty) != 0 {
		t.Errorf("capabilities of a plain pod = %v, want none", empty)
	}
}

func TestPodValidate(t *testing.T) {
	ok := Pod{ID: "abc", Name: "n", Namespace: "ns", UID: "u", NetNS: "/run/berth/netns/abc"}
	for _, tc := range []struct {
		name string
		mod  func(*Pod)
		bad  bool
	}{
		{name: "ok", mod: func(*Pod) {}},
		{name: "no id", mod: func(p *Pod) { p.ID = "" }, bad: true},
		{name: "no netns", mod: func(p *Pod) { p.NetNS = "" }, bad: true},
		{name: "semicolon", mod: func(p *Pod) { p.Name = "a;K8S_POD_UID=x" }, bad: true},
		{name: "protocol", mod: func(p *Pod) { p.PortMappings = []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}} }, bad: true},
		{name: "sctp", mod: func(p *Pod) { p.PortMappings = []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "SCTP"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mod(&p)
			err := p.validate()
			if tc.bad != errors.Is(err, errdefs.ErrInvalidArgument) || !tc.bad && err != nil {
				t.Fatalf("validate = %v, want bad=%v", err, tc.bad)
			}
		})
	}
}

func TestSplitRule(t *testing.T) {
	line := `-A POSTROUTING -s 10.86.255.2/32 -m comment --comment "name: \"net-a\" id: \"pod1\"" -j CNI-9a2cb4619d8cfe7d07bc7640`
	got, err := splitRule(line)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-A", "POSTROUTING", "-s", "10.86.255.2/32", "-m", "comment", "--comment", `name: "net-a" id: "pod1"`, "-j", "CNI-9a2cb4619d8cfe7d07bc7640"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("splitRule = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		comment, want string
	}{
		{`name: "net-a" id: "pod1"`, "CNI-9a2cb4619d8cfe7d07bc7640"},
		{`name: "net-a" id: "pod"`, ""}, // another pod's id is a prefix: no match
		{`name: "net-b" id: "pod1"`, ""},
	} {
		if got := masqChain(got, tc.comment); got != tc.want {
			t.Errorf("masqChain(%q) = %q, want %q", tc.comment, got, tc.want)
		}
	}
	if _, err := splitRule(`-A X --comment "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}
