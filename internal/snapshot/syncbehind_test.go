package snapshot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

func markerOf(s *Store, name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(s.layerDir(chain(name)), unsyncedFile))
	return string(b), err == nil
}

// TestLayersFlushBehind: a layer is published with this boot's marker and
// the background flush removes it.
func TestLayersFlushBehind(t *testing.T) {
	s := openStore(t)
	if s.syncer.boot == "" {
		t.Fatalf("no boot id read from %s", bootIDPath)
	}
	for _, n := range []string{"a", "b", "c"} {
		mustUnpack(t, s, chain(n), layer(t, "f="+n))
	}
	s.Flush()
	for _, n := range []string{"a", "b", "c"} {
		if !s.Exists(chain(n)) {
			t.Errorf("layer %s gone", n)
		}
		if m, ok := markerOf(s, n); ok {
			t.Errorf("layer %s still marked unsynced after Flush: %q", n, m)
		}
	}
}

// TestOpenSettlesUnsyncedLayers: at start, a layer marked in another boot
// (or whose marker a power cut emptied) is dropped, one marked in this
// boot (berthd crashed before its flush) is kept and flushed behind.
func TestOpenSettlesUnsyncedLayers(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	markers := map[string]string{
		"this-boot":  s.syncer.boot + " 7",
		"other-boot": "00000000-0000-0000-0000-000000000000 1",
		"empty":      "",
		"never-mkd":  "-",
	}
	for n := range markers {
		mustUnpack(t, s, chain(n), layer(t, "f="+n))
	}
	s.Flush()
	for n, m := range markers {
		if m == "-" {
			continue
		}
		if err := os.WriteFile(filepath.Join(s.layerDir(chain(n)), unsyncedFile), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Exists(chain("this-boot")) {
		t.Fatal("this boot's unflushed layer dropped")
	}
	if s2.syncer.seq < 7 {
		t.Errorf("sequence %d after Open: a new token could repeat the queued one", s2.syncer.seq)
	}
	s2.Flush()
	for n, want := range map[string]bool{"this-boot": true, "other-boot": false, "empty": false, "never-mkd": true} {
		if got := s2.Exists(chain(n)); got != want {
			t.Errorf("layer %s exists = %v after Open, want %v", n, got, want)
		}
		if m, ok := markerOf(s2, n); ok {
			t.Errorf("layer %s still marked after Open: %q", n, m)
		}
	}
	if left, _ := os.ReadDir(s2.tmpDir()); len(left) != 0 {
		t.Errorf("tmp/ not emptied: %v", left)
	}
}

// TestFlushKeepsANewerMarker: a layer removed and published again while
// its first flush ran keeps its new marker for the next flush.
func TestFlushKeepsANewerMarker(t *testing.T) {
	s := openStore(t)
	mustUnpack(t, s, chain("x"), layer(t, "f=x"))
	s.Flush()
	newer := s.syncer.boot + " 99"
	if err := os.WriteFile(filepath.Join(s.layerDir(chain("x")), unsyncedFile), []byte(newer), 0o644); err != nil {
		t.Fatal(err)
	}
	s.clearMarker(chain("x"), s.syncer.boot+" 1")
	if m, ok := markerOf(s, "x"); !ok || m != newer {
		t.Errorf("marker = %q, %v; want %q kept", m, ok, newer)
	}
}

// TestNoBootIDFlushesFirst: without a boot id the layer is flushed before
// it is published, and carries no marker.
func TestNoBootIDFlushesFirst(t *testing.T) {
	s := openStore(t)
	s.syncer.boot = ""
	mustUnpack(t, s, chain("y"), layer(t, "f=y"))
	if m, ok := markerOf(s, "y"); ok {
		t.Errorf("marker %q without a boot id", m)
	}
	if s.syncer.running {
		t.Error("a background flush started without a boot id")
	}
}

// TestFlushWaitsForQuiet: the background flush starts only once no layer
// has been published for the quiet time, or once the oldest has waited the
// longest wait; Flush does not wait for either.
func TestFlushWaitsForQuiet(t *testing.T) {
	for _, tc := range []struct {
		name           string
		quiet, maxWait time.Duration
		flush          bool
	}{
		{"quiet", 300 * time.Millisecond, time.Hour, false},
		{"longest wait", time.Hour, 300 * time.Millisecond, false},
		{"Flush", time.Hour, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			s.syncer.quiet, s.syncer.maxWait = tc.quiet, tc.maxWait
			t0 := time.Now()
			mustUnpack(t, s, chain("q"), layer(t, "f=q"))
			if _, ok := markerOf(s, "q"); !ok {
				t.Fatal("the layer was flushed before it was published")
			}
			if tc.flush {
				s.Flush()
			}
			if !testsupport.Poll(testsupport.Slow(10*time.Second), 20*time.Millisecond, func() bool {
				_, marked := markerOf(s, "q")
				return !marked
			}) {
				t.Fatal("the marker was never removed")
			}
			if waited := time.Since(t0); !tc.flush && waited < 300*time.Millisecond {
				t.Errorf("flushed after %v, before its wait", waited)
			}
		})
	}
}
