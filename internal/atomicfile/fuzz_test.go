package atomicfile

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeRecord feeds the record-file decoder (every container and
// sandbox record is read through it at start) whatever a disk may hold.
// Any content: no panic, and a file without the magic reads as itself.
// A complete version followed by a newer one torn at any byte, as a crash
// mid-write leaves it: the newer if it is whole, else the older, never
// damage.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"id":"a","state":"created"}`), []byte(`{"id":"a","state":"running"}`), uint16(40), []byte(`{"id":"a"}`))
	f.Add([]byte{}, []byte("x"), uint16(33), []byte(recordMagic))
	f.Add([]byte("old"), bytes.Repeat([]byte("n"), 5000), uint16(9000), encodeSlot(7, recordAlign, []byte("v")))
	f.Fuzz(func(t *testing.T, old, newer []byte, cut uint16, raw []byte) {
		got, err := decodeRecord(raw)
		if !bytes.HasPrefix(raw, []byte(recordMagic)) && (err != nil || !bytes.Equal(got, raw)) {
			t.Fatalf("a plain file reads as %q, %v", got, err)
		}
		if err != nil && !errors.Is(err, ErrDamagedRecord) {
			t.Fatalf("error %v", err)
		}

		if bytes.Contains(old, []byte(recordMagic)) {
			// A payload could then hold a forged slot header at a 4 KiB
			// boundary. Records are JSON, which cannot hold the zero bytes
			// every slot size has.
			return
		}
		size := (recordHeader + max(len(old), len(newer)) + recordAlign - 1) / recordAlign * recordAlign
		file := make([]byte, size, 2*size)
		copy(file, encodeSlot(1, size, old))
		slot1 := encodeSlot(2, size, newer)
		n := min(int(cut), len(slot1))
		file = append(file, slot1[:n]...)
		want := old
		if n == len(slot1) {
			want = newer
		}
		if got, err := decodeRecord(file); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("slot 1 written to byte %d of %d: got %q, %v; want %q", n, len(slot1), got, err, want)
		}
	})
}
