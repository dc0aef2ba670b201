package oci

import (
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestExecSizeLimits pins issue 9: a command line or environment execve
// must refuse is InvalidArgument at create, not exit 255 at every start.
func TestExecSizeLimits(t *testing.T) {
	many := make([]*runtimeapi.KeyValue, 100_000)
	for i := range many {
		many[i] = &runtimeapi.KeyValue{Key: "K" + strings.Repeat("x", i%7), Value: []byte("v")}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.ContainerConfig)
		err    error
		substr string
	}{
		{"longest argument", func(c *runtimeapi.ContainerConfig) { c.Args = []string{strings.Repeat("a", maxArgStrlen-1)} }, nil, ""},
		{"argument one byte too long", func(c *runtimeapi.ContainerConfig) { c.Args = []string{"x", strings.Repeat("a", maxArgStrlen)} }, errdefs.ErrInvalidArgument, "args: entry 2"},
		{"5 MiB argument", func(c *runtimeapi.ContainerConfig) { c.Args = []string{strings.Repeat("a", 5<<20)} }, errdefs.ErrInvalidArgument, "command and args"},
		{"1 MiB env value", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "BIG", Value: []byte(strings.Repeat("v", 1<<20))}}
		}, errdefs.ErrInvalidArgument, "envs: entry"},
		{"100k env entries", func(c *runtimeapi.ContainerConfig) { c.Envs = many }, nil, ""},
		{"7 MiB in all", func(c *runtimeapi.ContainerConfig) {
			for range 70 {
				c.Args = append(c.Args, strings.Repeat("a", 100<<10))
			}
		}, errdefs.ErrInvalidArgument, "more than the kernel's limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(t)
			tc.mutate(in.Config)
			_, err := ContainerSpec(in)
			checkErr(t, err, tc.err, tc.substr)
		})
	}
}

// TestMetadataLimits pins issue 17 item 5: labels or annotations past what
// the Kubernetes API server allows one object are InvalidArgument naming
// the field and the limit; exactly the limit passes.
func TestMetadataLimits(t *testing.T) {
	exactly := map[string]string{"k": strings.Repeat("v", MaxMetadataBytes-1)}
	over := map[string]string{"k": strings.Repeat("v", MaxMetadataBytes)}
	many := map[string]string{}
	for i := range 30_000 {
		many[strconv.Itoa(i)] = "a value" // 30k small entries, ~360 KiB
	}
	for _, tc := range []struct {
		name                string
		labels, annotations map[string]string
		substr              string
	}{
		{"none", nil, nil, ""},
		{"labels at the limit", exactly, nil, ""},
		{"annotations at the limit", nil, exactly, ""},
		{"both at the limit", exactly, exactly, ""},
		{"labels one byte over", over, nil, "pod: labels take 262145 bytes, more than the limit of 262144"},
		{"annotations one byte over", nil, over, "pod: annotations take 262145 bytes, more than the limit of 262144"},
		{"many small annotations", nil, many, "annotations take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckMetadata("pod", tc.labels, tc.annotations)
			if tc.substr == "" {
				checkErr(t, err, nil, "")
				return
			}
			checkErr(t, err, errdefs.ErrInvalidArgument, tc.substr)
		})
	}
}
