package atomicfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/fault"
)

// A record file holds the latest version of a small document that changes
// often (a container's record changes at create, start and exit), in one
// of two slots: an update overwrites the older slot in place with one
// pwrite, and a reader takes the valid slot with the higher sequence
// number. A slot torn by a crash, or by a power cut before it was flushed,
// fails its checksums, and the other slot still holds the previous
// version: readers see the old content or the new, never a mix, as with
// Write. Replacing a file by rename costs ~0.15 ms on ext4 here (a new
// inode, the rename, and ext4's flush of a file renamed over another); the
// pwrite costs ~0.01 ms.
//
// Layout: slot 0 at offset 0, slot 1 at offset S (the slot size, a
// multiple of 4 KiB, so that the slots never share a disk block). A slot
// is a 32-byte header then the payload:
//
//	0   magic "BRTHREC1"
//	8   sequence number (little endian uint64; the newer slot has the higher)
//	16  slot size S (uint32)
//	20  payload length (uint32)
//	24  CRC-32C of the payload
//	28  CRC-32C of header bytes 0-27
//
// A file that does not start with the magic is read whole, as written by
// Write: the records of older versions, which the next update converts.
const (
	recordMagic  = "BRTHREC1"
	recordHeader = 32
	recordAlign  = 4096
)

// Durability is how far a WriteRecord has gone when it returns.
type Durability int

const (
	// Volatile: in the page cache (state-directory files; see WriteVolatile).
	Volatile Durability = iota
	// FlushBehind: in the page cache, flushed to disk in the background: a
	// power cut within the few milliseconds of the flush may lose the
	// latest versions. For records whose loss after a power cut recovery
	// tolerates (berthd's container and sandbox records: a lost or damaged
	// one is dropped and what it named is swept as an orphan), on the path
	// of every container create and start, where an fsync costs ~0.5 ms.
	FlushBehind
	// Durable: on disk.
	Durable
)

// castagnoli is made on first use, not at package init: the supervisor's
// binary is every container's init too, and the table costs ~0.1 ms.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// ErrDamagedRecord: no slot of a record file holds a complete version.
var ErrDamagedRecord = errors.New("damaged record file: no complete version")

// WriteRecord makes data the latest version of the record file at path,
// creating it (atomically, like Write) if it does not exist. Writers of one
// path must not run concurrently.
func WriteRecord(path string, data []byte, perm os.FileMode, d Durability) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return createRecord(path, data, perm, d, 1)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	old, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	cur, ok := newestSlot(old)
	if !ok || recordHeader+len(data) > cur.size {
		// Not a record file yet, damaged, or outgrown: replace it whole.
		f.Close()
		return createRecord(path, data, perm, d, cur.seq+1)
	}
	off := int64(0)
	if cur.off == 0 {
		off = int64(cur.size)
	}
	fault.Point("state.mid-write")
	if _, err := f.WriteAt(encodeSlot(cur.seq+1, cur.size, data), off); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return finish(f, path, "", d)
}

// ReadRecord returns the latest version in the record file at path (or the
// whole file, if it is not a record file).
func ReadRecord(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	data, err = decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// decodeRecord returns the latest version in a record file's content b (a
// slice of b), or b itself if it is not a record file.
func decodeRecord(b []byte) ([]byte, error) {
	if s, ok := newestSlot(b); ok {
		return b[s.off+recordHeader : s.off+recordHeader+s.len], nil
	}
	if len(b) >= len(recordMagic) && string(b[:len(recordMagic)]) == recordMagic {
		return nil, ErrDamagedRecord
	}
	return b, nil
}

// createRecord replaces path with a record file holding data in slot 0.
func createRecord(path string, data []byte, perm os.FileMode, d Durability, seq uint64) error {
	// Headroom, so that a record that grows a little stays in place.
	size := (recordHeader + len(data) + len(data)/2 + recordAlign - 1) / recordAlign * recordAlign
	f, err := writeTemp(path, encodeSlot(seq, size, data), perm, d == Durable)
	if err != nil {
		return err
	}
	return finish(f, path, filepath.Dir(path), d)
}

// finish closes f (now at path) once the write is as durable as asked;
// dir, if not "", is the directory whose entry the write changed.
func finish(f *os.File, path, dir string, d Durability) error {
	switch d {
	case Durable:
		// A new file was synced by writeTemp; an update is synced here.
		err := unix.Fdatasync(int(f.Fd()))
		f.Close()
		if err == nil && dir != "" {
			err = SyncDir(dir)
		}
		if err != nil {
			return fmt.Errorf("write %s: sync: %w", f.Name(), err)
		}
	case FlushBehind:
		f.Close()
		background.add(path, dir)
	default:
		f.Close()
	}
	return nil
}

type slot struct {
	off, size, len int
	seq            uint64
}

func encodeSlot(seq uint64, size int, data []byte) []byte {
	b := make([]byte, recordHeader+len(data))
	copy(b, recordMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(size))
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(data, castagnoli()))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli()))
	copy(b[recordHeader:], data)
	return b
}

// newestSlot finds the valid slot with the highest sequence number in a
// record file's content. Slot 1 is looked for at every 4 KiB boundary, so
// that it is found even when slot 0's header (which gives S) is torn.
func newestSlot(b []byte) (best slot, ok bool) {
	for off := 0; off+recordHeader <= len(b); off += recordAlign {
		s, valid := decodeSlot(b, off)
		if valid && (off == 0 || off == s.size) && (!ok || s.seq > best.seq) {
			best, ok = s, true
		}
	}
	return best, ok
}

func decodeSlot(b []byte, off int) (slot, bool) {
	h := b[off : off+recordHeader]
	if string(h[:8]) != recordMagic || binary.LittleEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli()) {
		return slot{}, false
	}
	s := slot{
		off:  off,
		seq:  binary.LittleEndian.Uint64(h[8:]),
		size: int(binary.LittleEndian.Uint32(h[16:])),
		len:  int(binary.LittleEndian.Uint32(h[20:])),
	}
	if s.size%recordAlign != 0 || s.size == 0 || recordHeader+s.len > s.size || off+recordHeader+s.len > len(b) {
		return slot{}, false
	}
	if crc32.Checksum(b[off+recordHeader:off+recordHeader+s.len], castagnoli()) != binary.LittleEndian.Uint32(h[24:]) {
		return slot{}, false
	}
	return s, true
}
