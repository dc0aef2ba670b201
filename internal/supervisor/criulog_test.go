package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCriuLogErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, log, want string
	}{
		{"no log", "", ""},
		{"no errors", "(00.001) Warn (criu/x.c:1): harmless\n(00.002) pie: done\n", ""},
		{"one error", "(00.001) info\n(00.002) Error (criu/cr-restore.c:1402): Can't fork for 42: File exists\n",
			": (00.002) Error (criu/cr-restore.c:1402): Can't fork for 42: File exists"},
		{"the last four", "(1) Error (a): 1\n(2) Error (a): 2\n(3) Error (a): 3\n(4) Error (a): 4\n(5) Error (a): 5\n",
			": (2) Error (a): 2; (3) Error (a): 3; (4) Error (a): 4; (5) Error (a): 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCriuLog(t, dir, tc.name, tc.log)
			if got := criuLogErrors(path); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCriuPidTaken(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, log string
		want      int
	}{
		{"no log", "", 0},
		{"other failure", "(00.002) Error (criu/cr-restore.c:2320): Restoring FAILED.\n", 0},
		{"taken", "(00.078862) Forking task with 11 pid (flags 0x4c028000)\n(00.079429) Error (criu/cr-restore.c:1230): Can't fork for 11: File exists\n", 11},
		{"another errno", "(00.079429) Error (criu/cr-restore.c:1230): Can't fork for 11: Operation not permitted\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCriuLog(t, dir, tc.name, tc.log)
			if got := criuPidTaken(path); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// writeCriuLog writes log (none if empty) as a file of dir named after
// name, and returns its path.
func writeCriuLog(t *testing.T, dir, name, log string) string {
	t.Helper()
	path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
	if log != "" {
		if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return path
}
