package oci

import (
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// FuzzCRIRequests feeds CRI requests in their wire form, as a hostile
// client sends them, through the validation and spec generation behind
// RunPodSandbox and CreateContainer: the bytes are decoded both as a
// RunPodSandboxRequest and as a CreateContainerRequest. Nothing may panic,
// every refusal must carry a sentinel the gRPC edge maps to a client error,
// and every spec must encode. Nothing is written: host paths and the
// rootfs are only read. Seeds: testdata/fuzz/FuzzCRIRequests (kubelet-like
// requests and the unknown-enum cases of issue 9).
func FuzzCRIRequests(f *testing.F) {
	rootfs := rootfsFixture(f)
	volume := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		var pod runtimeapi.RunPodSandboxRequest
		if proto.Unmarshal(data, &pod) == nil {
			spec, err := SandboxSpec(SandboxInput{
				ID: "s1", Config: pod.GetConfig(), Image: testImage(), Rootfs: rootfs,
				NetNSPath: "/run/berth/netns/s1", PodFiles: PodFiles{Shm: "/run/berth/shm"}, Host: fakeHost(),
			})
			fuzzCheck(t, spec, err)
		}
		var ctr runtimeapi.CreateContainerRequest
		if proto.Unmarshal(data, &ctr) != nil {
			return
		}
		vols, err := ImageVolumes(ctr.GetConfig().GetMounts())
		if err != nil {
			fuzzCheck(t, nil, err)
			return
		}
		prepared := map[string]string{}
		for _, v := range vols {
			prepared[v.ContainerPath] = volume
		}
		res, err := ContainerSpec(ContainerInput{
			ID: "c1", SandboxID: "s1", Config: ctr.GetConfig(), SandboxConfig: ctr.GetSandboxConfig(),
			Namespaces:   SandboxNamespaces{Net: "/n", IPC: "/i", UTS: "/u", PID: "/p"},
			TargetPIDNS:  "/proc/1/ns/pid",
			PodFiles:     PodFiles{Hosts: "/h", ResolvConf: "/r", Hostname: "/hn", Shm: "/s"},
			Image:        testImage(),
			Rootfs:       rootfs,
			ImageVolumes: prepared,
			Host:         fakeHost(),
		})
		if err != nil {
			fuzzCheck(t, nil, err)
			return
		}
		fuzzCheck(t, res.Spec, nil)
		if len(res.Spec.Process.Args) == 0 || res.Spec.Process.Capabilities == nil {
			t.Fatalf("malformed spec: %+v", res.Spec.Process)
		}
	})
}

// fuzzCheck accepts a spec that encodes, or a refusal the gRPC edge maps
// to a client error.
func fuzzCheck(t *testing.T, spec any, err error) {
	t.Helper()
	if err != nil {
		for _, want := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrUnimplemented, errdefs.ErrFailedPrecondition} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("error without a client-error sentinel: %v", err)
	}
	if _, err := json.Marshal(spec); err != nil {
		t.Fatalf("spec does not encode: %v", err)
	}
}
