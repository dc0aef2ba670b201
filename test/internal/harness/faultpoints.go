package harness

import (
	"debug/buildinfo"
	"slices"
	"strings"
	"testing"
)

// FaultTag is the build tag that compiles berthd's fault points in
// (internal/fault); every build of berthd for the tests uses it.
const FaultTag = "faultinject"

// RequireFaultPoints fails t unless bin (a berthd) was built with FaultTag:
// a crash test against a berthd without fault points would see no crash,
// and must say so rather than fail obscurely or pass.
func RequireFaultPoints(t testing.TB, bin string) {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("read the build info of %s: %v", bin, err)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), FaultTag) {
			return
		}
	}
	t.Fatalf("%s was built without the %s build tag, so it has no fault points: build it with `make test-bin` (or go build -tags seccomp,%s)", bin, FaultTag, FaultTag)
}
