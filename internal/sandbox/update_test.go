package sandbox

import (
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/oci"
)

func TestCheckPodResources(t *testing.T) {
	v1 := oci.Host{SwapAccounting: true}
	v2 := oci.Host{CgroupV2: true, Controllers: []string{"cpu", "memory", "pids"}, SwapAccounting: true}
	// What kubelet sends after resizing a Burstable pod on v2.
	resized := &runtimeapi.LinuxContainerResources{CpuShares: 204, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 28}
	overhead := &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 1 << 20}
	for _, tc := range []struct {
		name                string
		host                oci.Host
		overhead, resources *runtimeapi.LinuxContainerResources
		err                 error
	}{
		{"nothing", v2, nil, nil, nil},
		{"resized on v2", v2, overhead, resized, nil},
		{"resized on v1", v1, nil, resized, nil},
		{"unified on v2", v2, nil, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "100"}}, nil},
		{"negative overhead", v2, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}, resized, errdefs.ErrInvalidArgument},
		{"bad cpuset", v2, nil, &runtimeapi.LinuxContainerResources{CpusetCpus: "x"}, errdefs.ErrInvalidArgument},
		{"unified key of an absent controller", v2, nil, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"io.max": "8:0 rbps=1"}}, errdefs.ErrInvalidArgument},
		{"unified on v1", v1, nil, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "100"}}, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPodResources(tc.host, tc.overhead, tc.resources)
			if (tc.err == nil && err != nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}
