package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteRecordKeepsTheLatestVersion(t *testing.T) {
	big := strings.Repeat("x", 5000)
	for _, d := range []Durability{Volatile, FlushBehind, Durable} {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.json")
		// Shrinking, growing within the slot, outgrowing it, shrinking back.
		for i, content := range []string{`{"a":1}`, `{"a":12345}`, `{}`, big, `{"b":2}`, big + "y", `{"c":3}`} {
			if err := WriteRecord(p, []byte(content), 0o600, d); err != nil {
				t.Fatalf("durability %d, write %d: %v", d, i, err)
			}
			got, err := ReadRecord(p)
			if err != nil || string(got) != content {
				t.Fatalf("durability %d, write %d: read %.20q, %v; want %.20q", d, i, got, err, content)
			}
		}
		if d == FlushBehind {
			time.Sleep(50 * time.Millisecond) // let the flush close the file before TempDir's cleanup
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("directory holds %d entries, want only the record", len(entries))
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode())
		}
	}
}

func TestWriteRecordUpdatesInPlace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := WriteRecord(p, []byte("one"), 0o600, Volatile); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	for _, content := range []string{"two", "three", "four"} {
		if err := WriteRecord(p, []byte(content), 0o600, Volatile); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("an update that fits its slot replaced the file")
	}
}

// A crash or power cut mid-update tears at most the slot being written:
// the reader falls back to the version before it.
func TestReadRecordSurvivesATornSlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(b []byte) // b: the file after writes "v1", "v2", "v3"
		want string
		err  error
	}{
		{name: "intact", tear: func([]byte) {}, want: "v3"},
		// v3 went to slot 0 (v1 slot 0, v2 slot 1, v3 slot 0).
		{name: "newest payload torn", tear: func(b []byte) { b[recordHeader] ^= 0xff }, want: "v2"},
		{name: "newest header torn", tear: func(b []byte) { b[9] ^= 0xff }, want: "v2"},
		{name: "magic of slot 0 torn", tear: func(b []byte) { b[0] = 0 }, want: "v2"},
		{name: "older slot torn", tear: func(b []byte) { b[recordAlign+recordHeader] ^= 0xff }, want: "v3"},
		{name: "both torn", tear: func(b []byte) { b[9] ^= 0xff; b[recordAlign+9] ^= 0xff }, err: ErrDamagedRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.json")
			for _, v := range []string{"v1", "v2", "v3"} {
				if err := WriteRecord(p, []byte(v), 0o600, Volatile); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			tc.tear(b)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadRecord(p)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("read %q, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("read %q, %v; want %q", got, err, tc.want)
			}
			// The next write goes over the torn or older slot and wins.
			if err := WriteRecord(p, []byte("v4"), 0o600, Volatile); err != nil {
				t.Fatal(err)
			}
			if got, err := ReadRecord(p); err != nil || string(got) != "v4" {
				t.Fatalf("after repair: read %q, %v", got, err)
			}
		})
	}
}

// Files written whole (by Write, or by berth versions before record files)
// are read as they are and converted by the next update.
func TestRecordReadsAndConvertsPlainFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := Write(p, []byte(`{"old":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRecord(p); err != nil || string(got) != `{"old":true}` {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := WriteRecord(p, []byte(`{"new":true}`), 0o600, Durable); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if !bytes.HasPrefix(raw, []byte(recordMagic)) {
		t.Fatalf("not converted: %q", raw)
	}
	if got, err := ReadRecord(p); err != nil || string(got) != `{"new":true}` {
		t.Fatalf("read %q, %v", got, err)
	}
}

func BenchmarkRecordUpdate(b *testing.B) {
	data := bytes.Repeat([]byte("r"), 1500)
	for name, write := range map[string]func(string) error{
		"WriteRecord":    func(p string) error { return WriteRecord(p, data, 0o600, Volatile) },
		"WriteVolatile":  func(p string) error { return WriteVolatile(p, data, 0o600) },
		"WriteRecordFlB": func(p string) error { return WriteRecord(p, data, 0o600, FlushBehind) },
	} {
		b.Run(name, func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "c.json")
			for b.Loop() {
				if err := write(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
