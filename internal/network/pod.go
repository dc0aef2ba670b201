package network

import (
	"fmt"
	"net"
	"strings"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Pod is what CNI needs to know about a sandbox.
type Pod struct {
	ID        string // sandbox id: the CNI container id and K8S_POD_INFRA_CONTAINER_ID
	Name      string
	Namespace string
	UID       string
	NetNS     string // path of the pinned network namespace

	PortMappings []PortMapping // host ports; the portMappings capability
	Bandwidth    *Bandwidth    // from the pod's bandwidth annotations (ParseBandwidth); nil = unlimited
}

// PortMapping is one entry of the CNI portMappings capability.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp, udp or sctp; Setup lowercases it, empty means tcp
	HostIP        string `json:"hostIP,omitempty"`
}

// Result is what Setup learned about the pod's network.
type Result struct {
	// IPs are the pod's addresses on its default network: at most one per
	// family, IPv4 first (kubelet's podIPs order), primary first.
	IPs []net.IP
	// Interface is the pod-side interface of the default network (eth0).
	Interface string
	// Raw holds each network's CNI result, default network first.
	Raw []*types100.Result
}

// cniArgs are the CNI_ARGS every Kubernetes network plugin expects.
func (p Pod) cniArgs() [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", p.Namespace},
		{"K8S_POD_NAME", p.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
		{"K8S_POD_UID", p.UID},
	}
}

func (p Pod) validate() error {
	if p.ID == "" || p.NetNS == "" {
		return fmt.Errorf("pod network needs an id and a netns path: %w", errdefs.ErrInvalidArgument)
	}
	// CNI_ARGS is "K=V;K=V": these characters would corrupt it.
	for _, v := range []string{p.ID, p.Name, p.Namespace, p.UID} {
		if strings.ContainsAny(v, ";=") {
			return fmt.Errorf("pod field %q has ';' or '=': %w", v, errdefs.ErrInvalidArgument)
		}
	}
	for _, pm := range p.PortMappings {
		switch strings.ToLower(pm.Protocol) {
		case "", "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("port mapping protocol %q: %w", pm.Protocol, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// capabilityArgs are the runtimeConfig values offered to plugins; libcni
// passes each only to plugins that declare the capability.
func (p Pod) capabilityArgs(ipRanges [][]map[string]string) map[string]any {
	caps := map[string]any{}
	var pms []PortMapping
	for _, pm := range p.PortMappings {
		// A mapping without a host port only documents the container port
		// (as in a pod spec); only host ports concern CNI.
		if pm.HostPort <= 0 {
			continue
		}
		pm.Protocol = strings.ToLower(pm.Protocol)
		if pm.Protocol == "" {
			pm.Protocol = "tcp"
		}
		pms = append(pms, pm)
	}
	if len(pms) > 0 {
		caps["portMappings"] = pms
	}
	if p.Bandwidth != nil {
		caps["bandwidth"] = p.Bandwidth
	}
	if len(ipRanges) > 0 {
		caps["ipRanges"] = ipRanges
	}
	return caps
}

// podIPs picks the addresses on the pod side of res: one IPv4 then one IPv6.
func podIPs(res *types100.Result) []net.IP {
	var v4, v6 net.IP
	for _, ipc := range res.IPs {
		// Skip addresses of host-side interfaces (a bridge's gateway).
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i < 0 || i >= len(res.Interfaces) || res.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		ip := ipc.Address.IP
		if ip4 := ip.To4(); ip4 != nil {
			if v4 == nil {
				v4 = ip4
			}
		} else if v6 == nil {
			v6 = ip
		}
	}
	var ips []net.IP
	for _, ip := range []net.IP{v4, v6} {
		if ip != nil {
			ips = append(ips, ip)
		}
	}
	return ips
}
