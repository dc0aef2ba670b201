package crilog

import (
	"bytes"
)

// StreamWriter turns one stream's bytes into records of a File. It is not
// safe for concurrent use: one reader goroutine owns it.
type StreamWriter struct {
	file   *File
	stream Stream
	max    int
	// crlf: "\r\n" ends a line like "\n" (a terminal's output).
	crlf    bool
	pending []byte // start of a line not yet terminated, shorter than max
}

// NewStreamWriter writes stream s to l, splitting messages longer than max
// bytes (<= 0: DefaultMaxLineSize).
func NewStreamWriter(l *File, s Stream, max int) *StreamWriter {
	if max <= 0 {
		max = DefaultMaxLineSize
	}
	return &StreamWriter{file: l, stream: s, max: max}
}

// NewTerminalWriter writes a terminal's output to l: one stream, logged as
// stdout (kubelet's convention for tty containers), whose lines end in "\r\n"
// because the terminal translates "\n" (ONLCR); the "\r" of "\r\n" is not
// part of the message, as containerd reads a terminal's output too. A "\r"
// elsewhere is kept.
func NewTerminalWriter(l *File, max int) *StreamWriter {
	w := NewStreamWriter(l, Stdout, max)
	w.crlf = true
	return w
}

// Write never fails: see File.Err.
func (w *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := w.max - len(w.pending)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i <= room:
			w.emit(false, p[:i])
			p = p[i+1:]
		case len(p) >= room:
			cut := room
			if w.crlf && p[cut-1] == '\r' {
				// It may start a "\r\n": hold it back for the next record.
				cut--
				if cut == 0 && len(w.pending) == 0 {
					cut = 1 // max is 1: nothing can be held back
				}
			}
			w.emit(true, p[:cut])
			p = p[cut:]
		default:
			w.pending = append(w.pending, p...)
			p = nil
		}
	}
	return n, nil
}

// emit writes pending+tail as one record and clears pending.
func (w *StreamWriter) emit(partial bool, tail []byte) {
	msg := tail
	if len(w.pending) > 0 {
		msg = append(w.pending, tail...)
	}
	if !partial && w.crlf && len(msg) > 0 && msg[len(msg)-1] == '\r' {
		msg = msg[:len(msg)-1]
	}
	w.file.record(w.stream, partial, msg)
	w.pending = w.pending[:0]
}

// Flush writes a pending unterminated line as a partial record: at EOF, and
// before the reader hands the stream over (an upgrade), so no byte is held
// only in memory.
func (w *StreamWriter) Flush() {
	if len(w.pending) > 0 {
		w.emit(true, nil)
	}
}
