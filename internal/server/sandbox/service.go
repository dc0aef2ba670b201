// Package sandbox is the CRI edge of pod sandboxes: RunPodSandbox,
// StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
// StreamPodSandboxes and UpdatePodSandboxResources.
package sandbox

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/server"
)

// ContainerStatuses gives the statuses of a pod's containers, which
// PodSandboxStatus carries for kubelet's evented PLEG.
type ContainerStatuses interface {
	PodContainerStatuses(ctx context.Context, sandboxID string) []*runtimeapi.ContainerStatus
}

// Service serves the sandbox RPCs.
type Service struct {
	m          *sandbox.Manager
	containers ContainerStatuses
	wire       *server.WireList[runtimeapi.PodSandboxState] // ListPodSandbox's encoded entries
}

// New returns the service; containers may be nil until containers exist.
func New(m *sandbox.Manager, containers ContainerStatuses) *Service {
	return &Service{m: m, containers: containers, wire: server.NewWireList[runtimeapi.PodSandboxState](&runtimeapi.ListPodSandboxResponse{}, "items")}
}
