// Package container is the CRI edge of containers: CreateContainer,
// StartContainer, StopContainer, RemoveContainer, ContainerStatus,
// ListContainers, StreamContainers, UpdateContainerResources and
// ReopenContainerLog.
package container

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/server"
)

// Service serves the container RPCs.
type Service struct {
	m    *container.Manager
	wire *server.WireList[container.State] // ListContainers' encoded entries
}

// New returns the service.
func New(m *container.Manager) *Service {
	return &Service{m: m, wire: server.NewWireList[container.State](&runtimeapi.ListContainersResponse{}, "containers")}
}

// Status is the CRI status of c.
func Status(c *container.Container) *runtimeapi.ContainerStatus {
	cfg := c.Config()
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.GetMetadata(),
		State:       c.CRIState(),
		CreatedAt:   c.CreatedAt,
		StartedAt:   c.StartedAt,
		FinishedAt:  c.FinishedAt,
		ExitCode:    c.ExitCode,
		Image:       imageSpec(c),
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		// Exactly the CRI mounts: kubelet reads the termination message
		// through them (CRI-CONTRACT.md).
		Mounts:     statusMounts(c),
		LogPath:    c.LogPath,
		User:       c.User.ContainerUser(),
		StopSignal: cfg.GetStopSignal(),
	}
	if r := c.Resources(); r != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: r}
	}
	return st
}

// statusMounts echoes the CRI mounts, each image volume's with the id of
// the image mounted as its image_ref (CRI-CONTRACT.md: the id PullImage
// returned; kubelet shows it as the volume's image digest).
func statusMounts(c *container.Container) []*runtimeapi.Mount {
	ms := c.Config().GetMounts()
	if len(c.VolumeImages) == 0 {
		return ms
	}
	out := slices.Clone(ms)
	for _, v := range c.VolumeImages {
		if v.Mount < 0 || v.Mount >= len(out) || out[v.Mount].GetImage() == nil {
			continue
		}
		m := proto.Clone(out[v.Mount]).(*runtimeapi.Mount)
		m.Image.ImageRef = v.ImageID
		out[v.Mount] = m
	}
	return out
}

func imageSpec(c *container.Container) *runtimeapi.ImageSpec {
	return imageSpecOf(c.ImageName, c.Config())
}

// imageSpecOf is the image a container of config cfg runs, name as the
// user named it.
func imageSpecOf(name string, cfg *runtimeapi.ContainerConfig) *runtimeapi.ImageSpec {
	asked := cfg.GetImage()
	return &runtimeapi.ImageSpec{
		Image:              name,
		Annotations:        asked.GetAnnotations(),
		UserSpecifiedImage: asked.GetUserSpecifiedImage(),
		RuntimeHandler:     asked.GetRuntimeHandler(),
	}
}

// ContainerStatus reports a container; unknown ids are NotFound.
func (s *Service) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.m.Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: Status(c)}
	if req.GetVerbose() {
		b, err := json.Marshal(map[string]any{
			"pid": c.Pid, "sandboxID": c.SandboxID, "runtime": c.Runtime, "cgroupPath": c.CgroupPath,
			"config": json.RawMessage(c.ConfigJSON),
		})
		if err != nil {
			return nil, fmt.Errorf("encode container info: %w", err)
		}
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// PodContainerStatuses are the statuses of a pod's containers, for
// PodSandboxStatus (evented PLEG).
func (s *Service) PodContainerStatuses(ctx context.Context, sandboxID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.m.List(container.Filter{SandboxID: sandboxID}) {
		if c.SandboxID == sandboxID {
			out = append(out, Status(c))
		}
	}
	return out
}
