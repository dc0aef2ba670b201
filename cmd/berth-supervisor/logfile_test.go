package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLogRotates pins issue 17 item 9: the supervisor's log, on a tmpfs,
// grew without bound. It is rotated at the limit, one old copy kept, and
// the descriptor (the supervisor's stderr) follows the new file.
func TestLogRotates(t *testing.T) {
	const max = 4096
	path := filepath.Join(t.TempDir(), "supervisor.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd())) // stands in for fd 2
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	l := newRotatingLog(fd, path, max)
	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	for range 1000 { // 100 KB through a 4 KiB limit
		if _, err := l.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	// Another writer of the descriptor (a panic's trace) lands in the
	// current file.
	unix.Write(fd, []byte("panic: boom\n"))
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > max+int64(len(line))+100 {
			t.Errorf("%s is %d bytes, want at most about %d", p, st.Size(), max)
		}
	}
	if b, _ := os.ReadFile(path); !bytes.HasSuffix(b, []byte("panic: boom\n")) {
		t.Errorf("the descriptor does not follow the new file")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 2 {
		t.Errorf("%d files, want the log and one old copy", len(ents))
	}
}

// TestLogNotAFile: stderr that is not the log file (the journal, a
// terminal, a pipe) is written as is, never rotated.
func TestLogNotAFile(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	path := filepath.Join(t.TempDir(), "supervisor.log")
	l := newRotatingLog(int(w.Fd()), path, 10)
	if _, err := l.Write([]byte("hello, journal\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "hello, journal\n" {
		t.Errorf("read %q", buf[:n])
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a log file was made: %v", err)
	}
}
