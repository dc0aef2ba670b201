package main

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// A supervisor runs from a sealed in-memory copy of its binary, so its
// /proc/<pid>/exe never names the file on disk: comparing with that made
// every start of berthd upgrade the supervisor in place, killing the execs
// in flight. The file it was started from is what counts.
func TestBinaryChanged(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "berth-supervisor")
	if err := os.WriteFile(bin, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	running := &v1.VersionInfo{Pid: os.Getpid(), File: v1.FileID(bin)}
	if changed, err := binaryChanged(running, bin); err != nil || changed {
		t.Fatalf("same file: changed=%v err=%v", changed, err)
	}
	// An upgrade replaces the file: a new inode at the same path.
	tmp := bin + ".new"
	if err := os.WriteFile(tmp, []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	if changed, err := binaryChanged(running, bin); err != nil || !changed {
		t.Fatalf("replaced file: changed=%v err=%v", changed, err)
	}
	// A supervisor too old to say: its /proc/<pid>/exe (here the test
	// binary itself, another file) decides.
	old := &v1.VersionInfo{Pid: os.Getpid()}
	if changed, err := binaryChanged(old, bin); err != nil || !changed {
		t.Fatalf("old supervisor: changed=%v err=%v", changed, err)
	}
}
