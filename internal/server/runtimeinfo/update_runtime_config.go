package runtimeinfo

import (
	"context"
	"fmt"
	"net"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// UpdateRuntimeConfig takes the node's pod CIDR from kubelet and passes it
// to the CNI plugins of pods created from now on (the ipRanges capability).
func (s *Service) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr != "" {
		// kubelet may send a comma-separated dual-stack pair.
		for _, c := range strings.Split(cidr, ",") {
			if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
				return nil, fmt.Errorf("pod_cidr %q: %v: %w", c, err, errdefs.ErrInvalidArgument)
			}
		}
		s.network.SetPodCIDR(cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
