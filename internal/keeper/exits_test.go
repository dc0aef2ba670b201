package keeper

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExitRecords(t *testing.T) {
	dir := t.TempDir()
	at := time.Unix(1700000000, 123456789)
	for _, ws := range []unix.WaitStatus{0, 5 << 8, 9, 11 | 0x80} {
		if err := WriteExit(dir, 42, uint64(ws)+1000, ws, at); err != nil {
			t.Fatal(err)
		}
		got, gotAt, err := ReadExit(dir, 42, uint64(ws)+1000)
		if err != nil || got != ws || !gotAt.Equal(at) {
			t.Errorf("status %#x: read %#x %v %v", uint32(ws), uint32(got), gotAt, err)
		}
	}
	// Another start time is another process.
	if _, _, err := ReadExit(dir, 42, 1); !errors.Is(err, ErrNoExit) {
		t.Errorf("other start time: %v", err)
	}
	RemoveExit(dir, 42, 1000)
	if _, _, err := ReadExit(dir, 42, 1000); !errors.Is(err, ErrNoExit) {
		t.Errorf("after remove: %v", err)
	}
	if ExitName(42, 1000) != "42-1000" {
		t.Errorf("name %q", ExitName(42, 1000))
	}
	for _, bad := range []string{"", "1", "x 1", "1 x", "1 2 3", "4294967296 1"} {
		os.WriteFile(filepath.Join(dir, ExitName(7, 7)), []byte(bad), 0o600)
		if _, _, err := ReadExit(dir, 7, 7); err == nil || errors.Is(err, ErrNoExit) {
			t.Errorf("malformed %q: %v", bad, err)
		}
	}
	if err := WriteExit(filepath.Join(dir, "missing"), 1, 1, 0, at); err == nil {
		t.Error("write into a missing directory: no error")
	}
	os.Mkdir(filepath.Join(dir, ExitName(8, 8)), 0o700)
	if _, _, err := ReadExit(dir, 8, 8); err == nil || errors.Is(err, ErrNoExit) {
		t.Errorf("a record that cannot be read: %v", err)
	}
}

func TestSweepExits(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"1-1", "2-2", tmpPrefix + "3-3", tmpPrefix + "4-4"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(filepath.Join(dir, tmpPrefix+"4-4"), old, old)
	SweepExits(dir, func(name string) bool { return name == "1-1" })
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{tmpPrefix + "3-3", "1-1"}
	if len(left) != 2 || left[0] != want[0] || left[1] != want[1] {
		t.Errorf("left %q, want %q", left, want)
	}
}

func TestStartTime(t *testing.T) {
	a, err := StartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("own start time %d %v", a, err)
	}
	if b, _ := StartTime(os.Getpid()); b != a {
		t.Errorf("start time changed: %d %d", a, b)
	}
	if ppid, start, err := Stat(os.Getpid()); err != nil || ppid != os.Getppid() || start != a {
		t.Errorf("stat: parent %d start %d %v, want %d %d", ppid, start, err, os.Getppid(), a)
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Error("no such process: no error")
	}
}
