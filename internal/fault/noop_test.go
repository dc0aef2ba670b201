//go:build !faultinject

package fault

import (
	"io"
	"strings"
	"testing"
)

// Without the tag nothing can kill the process, and asking for a fault is
// an error at start rather than a crash test that silently passes.
func TestCompiledOut(t *testing.T) {
	t.Setenv(EnvVar, "test.point")
	Point("test.point")
	r := strings.NewReader("data")
	if Reader("test.point", r) != io.Reader(r) {
		t.Error("Reader wraps its reader without the faultinject tag")
	}
	if err := Check(); err == nil {
		t.Errorf("Check accepts %s without the faultinject tag", EnvVar)
	}
	t.Setenv(EnvVar, "")
	if err := Check(); err != nil {
		t.Errorf("an empty %s: %v", EnvVar, err)
	}
}
