package nri

import (
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/sandbox"
)

func TestPodSandbox(t *testing.T) {
	// The pause is this process: namespace paths are built only from a pid
	// proven to be the pause's.
	pid := os.Getpid()
	start, _ := proctree.StartTime(pid)
	s := &sandbox.Sandbox{ID: "pod1", RuntimeHandler: "kata", IPs: []string{"10.0.0.2"}, PausePID: pid, PauseStartTime: start, NetNS: "/run/berth/netns/pod1"}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1"},
		Labels:      map[string]string{"app": "web"},
		Annotations: map[string]string{"a": "b"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod-u-1",
			Resources:    &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 1 << 20},
		},
	}
	got := podSandbox(s, cfg)
	if got.Id != "pod1" || got.Name != "web" || got.Namespace != "prod" || got.Uid != "u-1" || got.RuntimeHandler != "kata" || got.Pid != uint32(pid) {
		t.Errorf("identity: %+v", got)
	}
	if !reflect.DeepEqual(got.Labels, cfg.Labels) || !reflect.DeepEqual(got.Annotations, cfg.Annotations) || !reflect.DeepEqual(got.Ips, s.IPs) {
		t.Errorf("labels, annotations, ips: %v %v %v", got.Labels, got.Annotations, got.Ips)
	}
	// Copies: a plugin request must not alias the record.
	got.Labels["app"] = "changed"
	if cfg.Labels["app"] != "web" {
		t.Error("labels alias the pod config")
	}
	lx := got.GetLinux()
	if lx.GetCgroupParent() != "/kubepods/pod-u-1" || lx.GetPodResources().GetCpu().GetShares().GetValue() != 512 ||
		lx.GetPodResources().GetMemory().GetLimit().GetValue() != 1<<20 || lx.GetPodOverhead() != nil {
		t.Errorf("linux: %+v", lx)
	}
	want := []*api.LinuxNamespace{
		{Type: "network", Path: "/run/berth/netns/pod1"},
		{Type: "ipc", Path: fmt.Sprintf("/proc/%d/ns/ipc", pid)},
		{Type: "uts", Path: fmt.Sprintf("/proc/%d/ns/uts", pid)},
		{Type: "pid", Path: fmt.Sprintf("/proc/%d/ns/pid", pid)},
	}
	if !reflect.DeepEqual(lx.GetNamespaces(), want) {
		t.Errorf("namespaces: %v", lx.GetNamespaces())
	}
}

func TestNRIContainer(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: "app"},
		Labels:      map[string]string{"l": "1"},
		Annotations: map[string]string{"shared": "from-kubelet"},
		CDIDevices:  []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}},
	}
	oom := 100
	spec := &specs.Spec{
		Annotations: map[string]string{"shared": "from-spec", "io.kubernetes.cri.container-type": "container"},
		Process: &specs.Process{
			Args: []string{"sh", "-c", "true"}, Env: []string{"A=1"},
			User:        specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 5}},
			Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}},
			OOMScoreAdj: &oom,
		},
		Mounts: []specs.Mount{{Destination: "/data", Source: "/host/data", Type: "bind", Options: []string{"rbind", "ro"}}},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod-u-1/ctr1",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/x"}},
			Resources:   &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1"}},
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
		},
	}
	rec := func(state container.State) *container.Container {
		return &container.Container{
			ID: "ctr1", SandboxID: "pod1", State: state, Pid: 7, CreatedAt: 1, StartedAt: 2, FinishedAt: 3, ExitCode: 1, Reason: "Error",
			ImageName: "busybox:1", ImageRef: "docker.io/library/busybox@sha256:abc", ImageID: "sha256:cfg",
		}
	}

	t.Run("from the spec", func(t *testing.T) {
		got := nriContainer(rec(container.StateRunning), cfg, nil, spec)
		if got.Id != "ctr1" || got.PodSandboxId != "pod1" || got.Name != "app" || got.State != api.ContainerState_CONTAINER_RUNNING || got.Pid != 7 {
			t.Errorf("identity: %+v", got)
		}
		if got.CreatedAt != 1 || got.StartedAt != 2 || got.FinishedAt != 3 || got.ExitCode != 1 || got.StatusReason != "Error" {
			t.Errorf("status: %+v", got)
		}
		if got.GetImage().GetName() != "busybox:1" || got.GetImage().GetDigest() != "sha256:abc" || got.GetImage().GetConfigDigest() != "sha256:cfg" {
			t.Errorf("image: %+v", got.GetImage())
		}
		wantAnn := map[string]string{"shared": "from-kubelet", "io.kubernetes.cri.container-type": "container"}
		if !reflect.DeepEqual(got.Annotations, wantAnn) {
			t.Errorf("annotations: %v", got.Annotations)
		}
		if !reflect.DeepEqual(got.Args, spec.Process.Args) || !reflect.DeepEqual(got.Env, spec.Process.Env) {
			t.Errorf("args, env: %v %v", got.Args, got.Env)
		}
		if len(got.Mounts) != 1 || got.Mounts[0].Destination != "/data" || got.Mounts[0].Source != "/host/data" {
			t.Errorf("mounts: %v", got.Mounts)
		}
		if u := got.GetUser(); u.GetUid() != 1000 || u.GetGid() != 1000 || !reflect.DeepEqual(u.GetAdditionalGids(), []uint32{1000, 5}) {
			t.Errorf("user: %v", u)
		}
		if len(got.Rlimits) != 1 || got.Rlimits[0].Type != "RLIMIT_NOFILE" || got.Rlimits[0].Soft != 512 {
			t.Errorf("rlimits: %v", got.Rlimits)
		}
		if len(got.CDIDevices) != 1 || got.CDIDevices[0].Name != "vendor.com/gpu=0" {
			t.Errorf("CDI devices: %v", got.CDIDevices)
		}
		lx := got.GetLinux()
		if lx.GetCgroupsPath() != "/kubepods/pod-u-1/ctr1" || len(lx.GetNamespaces()) != 2 || lx.GetOomScoreAdj().GetValue() != 100 ||
			lx.GetResources().GetCpu().GetCpus() != "0-1" || lx.GetSysctl()["net.ipv4.ip_forward"] != "1" {
			t.Errorf("linux: %+v", lx)
		}
	})

	t.Run("resources updated since the spec was written", func(t *testing.T) {
		c := rec(container.StateRunning)
		c.ResourcesJSON = []byte(`{"cpusetCpus":"3"}`)
		got := nriContainer(c, cfg, &runtimeapi.LinuxContainerResources{CpusetCpus: "3"}, spec)
		if got.GetLinux().GetResources().GetCpu().GetCpus() != "3" {
			t.Errorf("resources: %v", got.GetLinux().GetResources())
		}
	})

	t.Run("without a bundle", func(t *testing.T) {
		got := nriContainer(rec(container.StateExited), cfg, &runtimeapi.LinuxContainerResources{CpuShares: 2}, nil)
		if got.Name != "app" || got.State != api.ContainerState_CONTAINER_STOPPED || got.Args != nil || got.Mounts != nil {
			t.Errorf("container: %+v", got)
		}
		if got.GetLinux().GetResources().GetCpu().GetShares().GetValue() != 2 {
			t.Errorf("resources: %v", got.GetLinux().GetResources())
		}
	})
}

func TestNRIState(t *testing.T) {
	for s, want := range map[container.State]api.ContainerState{
		container.StateCreating: api.ContainerState_CONTAINER_CREATED,
		container.StateCreated:  api.ContainerState_CONTAINER_CREATED,
		container.StateRunning:  api.ContainerState_CONTAINER_RUNNING,
		container.StateExited:   api.ContainerState_CONTAINER_STOPPED,
		"bogus":                 api.ContainerState_CONTAINER_UNKNOWN,
	} {
		if got := nriState(s); got != want {
			t.Errorf("%s: %v, want %v", s, got, want)
		}
	}
}

func TestDigestOf(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/library/busybox@sha256:abc": "sha256:abc",
		"sha256:abc":                           "",
		"":                                     "",
	} {
		if got := digestOf(ref); got != want {
			t.Errorf("digestOf(%q) = %q, want %q", ref, got, want)
		}
	}
}
