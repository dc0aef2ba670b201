package crilog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixedClock() time.Time { return time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC) }

const ts = "2024-05-06T07:08:09.123456789Z"

func TestStreamWriterSplitting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes []string
		want   []string // records without the timestamp
	}{
		{"one line", 16, []string{"hello\n"}, []string{"stdout F hello"}},
		{"empty line", 16, []string{"\n"}, []string{"stdout F "}},
		{"two lines one write", 16, []string{"a\nb\n"}, []string{"stdout F a", "stdout F b"}},
		{"line across writes", 16, []string{"he", "ll", "o\n"}, []string{"stdout F hello"}},
		{"exactly max", 4, []string{"abcd\n"}, []string{"stdout F abcd"}},
		{"max plus one", 4, []string{"abcde\n"}, []string{"stdout P abcd", "stdout F e"}},
		{"long split", 3, []string{"abcdefgh\n"}, []string{"stdout P abc", "stdout P def", "stdout F gh"}},
		{"long split across writes", 3, []string{"ab", "cdef", "g\n"}, []string{"stdout P abc", "stdout P def", "stdout F g"}},
		{"multiple of max", 3, []string{"abcdef\n"}, []string{"stdout P abc", "stdout F def"}},
		{"unterminated at EOF is partial", 16, []string{"a\nrest"}, []string{"stdout F a", "stdout P rest"}},
		{"carriage return kept", 16, []string{"x\r\n"}, []string{"stdout F x\r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			l, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			l.now = fixedClock
			w := NewStreamWriter(l, Stdout, tc.max)
			for _, s := range tc.writes {
				w.Write([]byte(s))
			}
			w.Flush()
			l.Close()
			got := readRecords(t, path)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("records\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestTerminalWriter: a terminal ends its lines in "\r\n"; the "\r" is not
// part of the message, wherever the writes or the size limit cut.
func TestTerminalWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes []string
		want   []string
	}{
		{"crlf", 16, []string{"a\r\nb\r\n"}, []string{"stdout F a", "stdout F b"}},
		{"bare lf", 16, []string{"a\n"}, []string{"stdout F a"}},
		{"crlf across writes", 16, []string{"a\r", "\n"}, []string{"stdout F a"}},
		{"inner cr kept", 16, []string{"50%\r100%\r\n"}, []string{"stdout F 50%\r100%"}},
		{"empty line", 16, []string{"\r\n"}, []string{"stdout F "}},
		{"cr at the split", 4, []string{"abc\r\n"}, []string{"stdout F abc"}},
		{"cr just past max", 3, []string{"abc\r\n"}, []string{"stdout P abc", "stdout F "}},
		{"cr held back at the split", 4, []string{"abcd\r", "\n"}, []string{"stdout P abcd", "stdout F "}},
		{"long line cr held back", 4, []string{"abc\rdefg\r\n"}, []string{"stdout P abc", "stdout P \rdef", "stdout F g"}},
		{"cr at EOF kept", 16, []string{"a\r"}, []string{"stdout P a\r"}},
		{"max one", 1, []string{"\r\n"}, []string{"stdout F "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			l, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			l.now = fixedClock
			w := NewTerminalWriter(l, tc.max)
			for _, s := range tc.writes {
				w.Write([]byte(s))
			}
			w.Flush()
			l.Close()
			got := readRecords(t, path)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("records\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// readRecords returns the records of path with the timestamp checked and cut.
func readRecords(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, ts+" ")
		if !ok || !strings.HasSuffix(rest, "\n") {
			t.Fatalf("malformed record %q", line)
		}
		out = append(out, strings.TrimSuffix(rest, "\n"))
	}
	return out
}

func TestStreamsShareFileWithTheirTags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, _ := Open(path)
	l.now = fixedClock
	out, errw := NewStreamWriter(l, Stdout, 0), NewStreamWriter(l, Stderr, 0)
	out.Write([]byte("o1\no2"))
	errw.Write([]byte("e1\n"))
	out.Write([]byte("\n"))
	l.Close()
	got := strings.Join(readRecords(t, path), "|")
	if want := "stdout F o1|stderr F e1|stdout F o2"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	l, _ := Open(path)
	l.now = fixedClock
	w := NewStreamWriter(l, Stdout, 0)
	w.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("still old\n")) // kubelet renames, then asks to reopen
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("after\n"))
	l.Close()
	if got := strings.Join(readRecords(t, path+".1"), "|"); got != "stdout F before|stdout F still old" {
		t.Fatalf("rotated file: %q", got)
	}
	if got := strings.Join(readRecords(t, path), "|"); got != "stdout F after" {
		t.Fatalf("new file: %q", got)
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "log")
	os.Mkdir(filepath.Dir(path), 0o755)
	l, _ := Open(path)
	l.now = fixedClock
	w := NewStreamWriter(l, Stdout, 0)
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(filepath.Dir(path), moved); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("reopen into a missing directory succeeded")
	}
	if l.Err() == nil {
		t.Fatal("reopen error not reported")
	}
	w.Write([]byte("kept\n"))
	l.Close()
	if got := strings.Join(readRecords(t, filepath.Join(moved, "log")), "|"); got != "stdout F kept" {
		t.Fatalf("old file: %q", got)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("a failed reopen created something: %v", err)
	}
}

func TestDiscard(t *testing.T) {
	l, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	w := NewStreamWriter(l, Stdout, 0)
	if n, err := w.Write([]byte("x\n")); n != 2 || err != nil {
		t.Fatalf("write %d %v", n, err)
	}
	if l.Reopen() != nil || l.Close() != nil {
		t.Fatal("discarding log failed")
	}
}

// TestNoFollow pins a hostile-input fix: a symlink planted at the log path
// (before the create or before kubelet's rotation reopens it) is not
// followed, so the supervisor writes nothing outside the log directory.
func TestNoFollow(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.WriteFile(outside, []byte("precious\n"), 0o644)
	path := filepath.Join(dir, "log")
	if err := os.Symlink(outside, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open followed a symlink")
	}
	os.Remove(path)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Rename(path, path+".1")
	os.Symlink(outside, path)
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen followed a symlink")
	}
	NewStreamWriter(l, Stdout, 0).Write([]byte("x\n"))
	if b, _ := os.ReadFile(outside); string(b) != "precious\n" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
}
