package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyBudget keeps the supervisor small: it must never link the
// gRPC stack, Kubernetes code, registry or CNI libraries (berthd's business).
func TestDependencyBudget(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "seccomp", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"google.golang.org/grpc",
		"k8s.io/",
		"github.com/google/go-containerregistry",
		"github.com/containernetworking",
		"github.com/berth-cri/berth/internal/errdefs", // imports grpc
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("berth-supervisor depends on %s", pkg)
			}
		}
	}
}
