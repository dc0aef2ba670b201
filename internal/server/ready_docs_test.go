package server

import (
	"os"
	"path"
	"strings"
	"testing"
)

// TestRecoveryGateDocumented: docs/architecture.md's list of the RPCs that
// answer during recovery is alwaysOpen's, no more, no less.
func TestRecoveryGateDocumented(t *testing.T) {
	data, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "- Until recovery is done, only these answer")
	if !ok {
		t.Fatal("docs/architecture.md no longer says which RPCs answer during recovery")
	}
	para, _, _ := strings.Cut(rest, "\n- ")
	for method := range alwaysOpen {
		if name := path.Base(method); !strings.Contains(para, name) {
			t.Errorf("%s answers during recovery; docs/architecture.md does not say so", name)
		}
	}
	// The paragraph names the gated ones only as such.
	if !strings.Contains(para, "RemoveImage included, is `Unavailable`") {
		t.Error("docs/architecture.md should say that the other RPCs, RemoveImage included, are Unavailable")
	}
}
