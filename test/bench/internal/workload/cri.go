package workload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/target"
)

// Label marks every pod the benchmark creates, so that the runner can sweep
// up what a failed workload left behind.
const Label = "berth-bench"

// sleepCmd is the container of the pod figures: busybox doing nothing.
// As PID 1 it ignores SIGTERM, so it is only ever stopped with its pod
// (StopPodSandbox kills at once).
var sleepCmd = []string{"sleep", "3600"}

// pod is one sandbox the workload made.
type pod struct {
	id     string
	config *runtimeapi.PodSandboxConfig
}

// newPodConfig returns the config of a pod named name: the pod network
// (CNI), default namespaces, no cgroup parent (the runtime picks its
// default, as with critest on cgroupfs).
func newPodConfig(t *target.Target, name string) *runtimeapi.PodSandboxConfig {
	uid := randomID()
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Namespace: "berth-bench",
			Uid:       uid,
		},
		Hostname:     name,
		LogDirectory: filepath.Join(t.LogDir, uid),
		Labels:       map[string]string{Label: "1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// newContainerConfig returns a container named name running cmd in image.
func newContainerConfig(name, image string, cmd []string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{Label: "1"},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ensureImages pulls each image the runtime does not have yet, so that a
// "warm" figure never includes a pull.
func ensureImages(ctx context.Context, t *target.Target, refs ...string) error {
	for _, ref := range refs {
		spec := &runtimeapi.ImageSpec{Image: ref}
		st, err := t.Images.ImageStatus(ctx, spec, false)
		if err != nil {
			return fmt.Errorf("ImageStatus %s: %w", ref, err)
		}
		if st.GetImage() != nil {
			continue
		}
		if _, err := t.Images.PullImage(ctx, spec, nil, nil); err != nil {
			return fmt.Errorf("PullImage %s: %w", ref, err)
		}
	}
	return nil
}

// runPod runs a pod named name (newPodConfig) with no container yet.
func runPod(ctx context.Context, t *target.Target, name string) (*pod, error) {
	cfg := newPodConfig(t, name)
	id, err := t.Runtime.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox: %w", err)
	}
	return &pod{id: id, config: cfg}, nil
}

// startTimes are the parts of one pod start.
type startTimes struct {
	run, create, start time.Duration
}

func (s startTimes) total() time.Duration { return s.run + s.create + s.start }

// startPod runs a pod with one container running cmd, and times each call.
// A pod that started is returned even when its container failed, so that
// the caller tears it down.
func startPod(ctx context.Context, t *target.Target, name, image string, cmd []string) (*pod, string, startTimes, error) {
	var st startTimes
	cfg := newPodConfig(t, name)
	t0 := time.Now()
	id, err := t.Runtime.RunPodSandbox(ctx, cfg, "")
	st.run = time.Since(t0)
	if err != nil {
		return nil, "", st, fmt.Errorf("RunPodSandbox: %w", err)
	}
	p := &pod{id: id, config: cfg}
	ctr, ct, err := startContainer(ctx, t, p, "c0", image, cmd)
	st.create, st.start = ct.create, ct.start
	return p, ctr, st, err
}

// startContainer creates and starts a container in p, timing each call.
func startContainer(ctx context.Context, t *target.Target, p *pod, name, image string, cmd []string) (string, startTimes, error) {
	var st startTimes
	t0 := time.Now()
	ctr, err := t.Runtime.CreateContainer(ctx, p.id, newContainerConfig(name, image, cmd), p.config)
	st.create = time.Since(t0)
	if err != nil {
		return "", st, fmt.Errorf("CreateContainer: %w", err)
	}
	t1 := time.Now()
	err = t.Runtime.StartContainer(ctx, ctr)
	st.start = time.Since(t1)
	if err != nil {
		return ctr, st, fmt.Errorf("StartContainer: %w", err)
	}
	return ctr, st, nil
}

// removePod stops and removes a pod (its containers with it, as
// RemovePodSandbox requires), and returns how long that took.
func removePod(ctx context.Context, t *target.Target, id string) (time.Duration, error) {
	t0 := time.Now()
	if err := t.Runtime.StopPodSandbox(ctx, id); err != nil {
		return 0, fmt.Errorf("StopPodSandbox: %w", err)
	}
	if err := t.Runtime.RemovePodSandbox(ctx, id); err != nil {
		return 0, fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return time.Since(t0), nil
}

// removePods removes every pod in ids, going on after a failure, and
// returns the failures joined.
func removePods(ctx context.Context, t *target.Target, pods []*pod) error {
	var errs []error
	for _, p := range pods {
		if p == nil {
			continue
		}
		if _, err := removePod(ctx, t, p.id); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", p.id, err))
		}
	}
	return errors.Join(errs...)
}

// Sweep removes every pod labelled by the benchmark that is still there: a
// safety net after each workload, so that one failure does not skew the
// next figures (or leave CNI state behind).
func Sweep(ctx context.Context, t *target.Target) error {
	sandboxes, err := t.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{Label: "1"},
	})
	if err != nil {
		return fmt.Errorf("ListPodSandbox: %w", err)
	}
	var pods []*pod
	for _, s := range sandboxes {
		pods = append(pods, &pod{id: s.Id})
	}
	return removePods(ctx, t, pods)
}
