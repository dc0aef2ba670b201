//go:build faultinject

package fault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		nth  int64
	}{
		{"", "", 1},
		{"sandbox.after-cni-add", "sandbox.after-cni-add", 1},
		{"state.mid-write@3", "state.mid-write", 3},
		{"x@0", "", 1},
		{"x@-2", "", 1},
		{"x@three", "", 1},
	} {
		got := parse(tc.in)
		if got.name != tc.name || (got.name != "" && got.nth != tc.nth) {
			t.Errorf("parse(%q) = %q@%d, want %q@%d", tc.in, got.name, got.nth, tc.name, tc.nth)
		}
	}
}

// TestUnarmedPointsDoNothing runs in a process whose BERTH_FAULT names no
// point of this test.
func TestUnarmedPointsDoNothing(t *testing.T) {
	for range 3 {
		Point("never.armed")
	}
	r := strings.NewReader("data")
	if Reader("never.armed", r) != io.Reader(r) {
		t.Error("an unarmed Reader wraps its reader")
	}
}

// TestArmedPointKills re-runs this test binary as a child that hits points
// and reports each hit survived; the child must die by SIGKILL exactly at
// the armed hit.
func TestArmedPointKills(t *testing.T) {
	if os.Getenv("FAULT_CHILD") == "1" {
		for i := 1; i <= 4; i++ {
			Point("other")
			Point("test.point")
			fmt.Printf("survived %d\n", i)
		}
		io.ReadAll(Reader("test.stream", strings.NewReader("abc")))
		fmt.Println("stream read")
		return
	}
	for _, tc := range []struct {
		fault, want string
		dies        bool
	}{
		{"test.point", "", true},
		{"test.point@3", "survived 1\nsurvived 2\n", true},
		{"test.stream", "survived 1\nsurvived 2\nsurvived 3\nsurvived 4\n", true},
		{"test.point@9", "survived 1\nsurvived 2\nsurvived 3\nsurvived 4\nstream read\n", false},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestArmedPointKills$")
		cmd.Env = append(os.Environ(), "FAULT_CHILD=1", EnvVar+"="+tc.fault)
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		var ee *exec.ExitError
		killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		if killed != tc.dies {
			t.Errorf("%s: killed=%v (%v), want %v", tc.fault, killed, err, tc.dies)
		}
		if got, _, _ := strings.Cut(out.String(), "PASS"); got != tc.want {
			t.Errorf("%s: child printed %q, want %q", tc.fault, got, tc.want)
		}
	}
}
