package crilog

import (
	"bytes"
	"errors"
	"io"
)

// StreamWriter turns one stream's bytes into records of a File. It is not
// safe for concurrent use: one reader goroutine owns it.
type StreamWriter struct {
	file    *File
	stream  Stream
	max     int
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
			w.emit(true, p[:room])
			p = p[room:]
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

// Copy reads r into w until EOF or a read error, then flushes. It returns
// nil at EOF, and the read error otherwise (os.ErrDeadlineExceeded when the
// caller stopped it through a read deadline).
func (w *StreamWriter) Copy(r io.Reader, buf []byte) error {
	defer w.Flush()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w.Write(buf[:n])
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
