package oci

import (
	"encoding/json"
	"errors"
	"path"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// fuzzRequest is what a fuzz input decodes to: the CRI request parts and
// the image config, in their JSON forms.
type fuzzRequest struct {
	Config  *runtimeapi.ContainerConfig  `json:"config"`
	Sandbox *runtimeapi.PodSandboxConfig `json:"sandbox"`
	Image   ocispec.ImageConfig          `json:"image"`
}

// FuzzContainerSpec: no CRI config may panic ContainerSpec, and every
// refusal must carry a sentinel the gRPC edge maps to a client error.
// Seeds: testdata/fuzz/FuzzContainerSpec.
func FuzzContainerSpec(f *testing.F) {
	f.Add(`{"config":{"metadata":{"name":"a"},"command":["/bin/sh"]},"sandbox":{"hostname":"h"}}`)
	rootfs := rootfsFixture(f)
	f.Fuzz(func(t *testing.T, data string) {
		var req fuzzRequest
		if json.Unmarshal([]byte(data), &req) != nil {
			return
		}
		in := ContainerInput{
			ID: "c1", SandboxID: "s1", Config: req.Config, SandboxConfig: req.Sandbox, Image: req.Image,
			Rootfs: rootfs, Host: fakeHost(), TargetPIDNS: "/proc/1/ns/pid",
			Namespaces: SandboxNamespaces{Net: "/n", IPC: "/i", UTS: "/u", PID: "/p"},
			PodFiles:   PodFiles{Hosts: "/h", Shm: "/s"},
		}
		res, err := ContainerSpec(in)
		if err != nil {
			for _, want := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrUnimplemented, errdefs.ErrFailedPrecondition} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		s := res.Spec
		if len(s.Process.Args) == 0 || s.Hostname != "" || !path.IsAbs(s.Linux.CgroupsPath) || s.Process.Capabilities == nil {
			t.Fatalf("malformed spec: %+v", s)
		}
	})
}
