package stats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/cgroups/v3"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/testsupport"
)

const benchPods, benchPerPod = 10, 10

// benchTree makes 10 pod cgroups of 10 container cgroups each in the v1
// controllers stats reads, and the Source describing them.
func benchTree(b *testing.B) *fakeSource {
	b.Helper()
	testsupport.Require(b, os.Geteuid() == 0, "needs root")
	if m := cgroups.Mode(); m != cgroups.Legacy && m != cgroups.Hybrid {
		// skip: platform
		b.Skip("needs cgroup v1 (the v2 reader is exercised in internal/stats)")
	}
	root := fmt.Sprintf("/berth-stats-bench-%d", os.Getpid())
	var dirs []string
	src := &fakeSource{}
	for p := range benchPods {
		pod := fmt.Sprintf("pod%d", p)
		sb := SandboxInfo{ID: pod, CgroupParent: filepath.Join(root, pod)}
		dirs = append(dirs, sb.CgroupParent)
		for c := range benchPerPod {
			id := fmt.Sprintf("%s-c%d", pod, c)
			ci := ContainerInfo{ID: id, SandboxID: pod, Running: true, CgroupPath: filepath.Join(sb.CgroupParent, id), RootfsKey: id,
				Metadata: &runtimeapi.ContainerMetadata{Name: id}}
			dirs = append(dirs, ci.CgroupPath)
			sb.Containers = append(sb.Containers, ci)
			src.containers = append(src.containers, ci)
		}
		src.sandboxes = append(src.sandboxes, sb)
	}
	dirs = append([]string{root}, dirs...)
	for _, ctrl := range []string{"cpuacct", "memory", "pids"} {
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", ctrl, d), 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Cleanup(func() {
		for _, ctrl := range []string{"cpuacct", "memory", "pids"} {
			for i := len(dirs) - 1; i >= 0; i-- { // children first
				if err := os.Remove(filepath.Join("/sys/fs/cgroup", ctrl, dirs[i])); err != nil && !errors.Is(err, os.ErrNotExist) {
					b.Errorf("remove cgroup: %v", err)
				}
			}
		}
	})
	return src
}

func benchService(b *testing.B, src *fakeSource) *Service {
	b.Helper()
	cg, err := stats.NewCgroupReader()
	if err != nil {
		b.Fatal(err)
	}
	return New(Deps{
		Source:          src,
		Cgroups:         cg,
		LayerUsage:      func(string) (snapshot.Usage, error) { return snapshot.Usage{Bytes: 1, Inodes: 1}, nil },
		LayerMountpoint: mountpoint,
	})
}

// BenchmarkListContainerStats100 is one kubelet housekeeping round on a
// node with 100 running containers.
func BenchmarkListContainerStats100(b *testing.B) {
	s := benchService(b, benchTree(b))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		if err != nil || len(resp.Stats) != benchPods*benchPerPod {
			b.Fatalf("%d stats, %v", len(resp.GetStats()), err)
		}
	}
}

// BenchmarkListPodSandboxStats100 is the same node asked the CRI-stats way:
// 10 pods with their pod cgroups, 100 containers inside.
func BenchmarkListPodSandboxStats100(b *testing.B) {
	s := benchService(b, benchTree(b))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
		if err != nil || len(resp.Stats) != benchPods {
			b.Fatalf("%d stats, %v", len(resp.GetStats()), err)
		}
	}
}
