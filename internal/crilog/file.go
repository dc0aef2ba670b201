// Package crilog writes container output in the kubelet CRI log format:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <message>\n
//
// F closes a line; P is a fragment that the following records of the same
// stream continue (kubelet joins them). A line longer than the maximum size is
// split into P…P F records. A last line without a trailing newline at EOF is
// written with tag P, as containerd does: kubelet then reproduces it without
// adding a newline the container never wrote. In tty mode the single stream
// is reported as stdout, and "\r\n" ends a line (NewTerminalWriter).
package crilog

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxLineSize is the default longest message in one record.
const DefaultMaxLineSize = 16 * 1024

// Stream names a container output stream.
type Stream string

const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// File is one container's CRI log file, shared by its streams. Records are
// written with a single write(2) each on an O_APPEND descriptor, so records of
// two streams never interleave inside a line.
type File struct {
	path string
	now  func() time.Time

	mu      sync.Mutex // guards the fields below
	f       *os.File   // nil: output is discarded
	closed  bool
	lastErr error
	buf     []byte
}

// Open opens (creating it if needed) the log at path for appending. An empty
// path discards everything written.
func Open(path string) (*File, error) {
	l := &File{path: path, now: time.Now}
	if path == "" {
		return l, nil
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// openAppend never follows a symlink at path: the file is opened as root,
// and kubelet's rotation reopens it long after berthd checked the path.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return f, nil
}

// Path is the log file's path ("" when discarding).
func (l *File) Path() string { return l.path }

// Reopen opens the path anew, for kubelet's rotation which renames the file
// and asks for a new one. On failure the old file stays in use (rotation must
// not lose lines) and the error is returned.
func (l *File) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openAppend(l.path)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		// Nothing will be written any more; do not hold a new file.
		if f != nil {
			f.Close()
		}
		return nil
	}
	if err != nil {
		l.lastErr = err
		return err
	}
	old := l.f
	l.f = f
	l.lastErr = nil
	if old != nil {
		old.Close()
	}
	return nil
}

// Err returns the last write or reopen error, nil once a later operation
// succeeded. A write error is reported here, never fatal: output keeps being
// drained so the container never blocks on a full pipe.
func (l *File) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// record writes one CRI log record.
func (l *File) record(s Stream, partial bool, msg []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	b := l.now().UTC().AppendFormat(l.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, s...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, msg...)
	b = append(b, '\n')
	if _, err := l.f.Write(b); err != nil {
		l.lastErr = fmt.Errorf("write log %s: %w", l.path, err)
	} else {
		l.lastErr = nil
	}
	if cap(b) <= 64*1024 {
		l.buf = b // reuse ordinary-sized buffers only
	}
}
