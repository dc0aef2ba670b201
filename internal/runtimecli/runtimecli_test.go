package runtimecli

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRlimitType(t *testing.T) {
	if got, ok := RlimitType("RLIMIT_NOFILE"); !ok || got != unix.RLIMIT_NOFILE {
		t.Errorf("RLIMIT_NOFILE: %d %v", got, ok)
	}
	if _, ok := RlimitType("RLIMIT_BOGUS"); ok {
		t.Error("unknown rlimit accepted")
	}
}

func TestLastLogError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.json")
	os.WriteFile(p, []byte(`{"level":"info","msg":"start"}
{"level":"error","msg":"first"}
not json
{"level":"fatal","msg":"container_linux.go: exec failed"}
{"level":"warning","msg":"late"}
`), 0o600)
	if got := LastLogError(p); got != "container_linux.go: exec failed" {
		t.Errorf("got %q", got)
	}
	if got := LastLogError(filepath.Join(t.TempDir(), "absent")); got != "" {
		t.Errorf("absent log: %q", got)
	}
}
