package atomicfile

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestFlusherBounded pins issue 17 item 10: each flush-behind write had a
// goroutine of its own holding the file open until its fdatasync returned,
// so a stalled disk piled up goroutines and descriptors without bound. Now
// one goroutine flushes, by path, a bounded queue; past it the writers
// flush themselves (and wait, as the disk makes them).
func TestFlusherBounded(t *testing.T) {
	stall := make(chan struct{})
	var mu sync.Mutex
	synced := map[string]int{}
	f := newFlusher(func(p string) {
		<-stall
		mu.Lock()
		synced[p]++
		mu.Unlock()
	})
	before := runtime.NumGoroutine()
	for i := range maxPendingFlushes {
		f.add(fmt.Sprintf("/f%d", i), "")
	}
	if n := runtime.NumGoroutine() - before; n > 1 {
		t.Errorf("%d goroutines for %d pending flushes, want 1", n, maxPendingFlushes)
	}
	// Past the bound, a writer flushes itself: it waits for the disk.
	var done atomic.Bool
	go func() { f.add("/extra", "/dir"); done.Store(true) }()
	time.Sleep(50 * time.Millisecond)
	if done.Load() {
		t.Error("a write past the bound returned with its flush queued")
	}
	close(stall)
	var n int
	if !testsupport.Poll(5*time.Second, time.Millisecond, func() bool {
		mu.Lock()
		n = len(synced)
		mu.Unlock()
		return n == maxPendingFlushes+2 && done.Load() // the queue's, then the writer's own
	}) {
		t.Fatalf("%d paths synced, want %d", n, maxPendingFlushes+2)
	}
	// The goroutine ends once idle.
	if !testsupport.Poll(5*time.Second, time.Millisecond, func() bool { return runtime.NumGoroutine() <= before }) {
		t.Fatalf("%d goroutines left", runtime.NumGoroutine()-before)
	}
}

// TestFlushBehindWrites: many flush-behind record writes leave no
// goroutines or descriptors behind for long, and read back.
func TestFlushBehindWrites(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	for i := range 2000 {
		p := fmt.Sprintf("%s/r%d", dir, i%50)
		if err := WriteRecord(p, []byte(fmt.Sprint(i)), 0o600, FlushBehind); err != nil {
			t.Fatal(err)
		}
	}
	if n := runtime.NumGoroutine() - before; n > 1 {
		t.Errorf("%d goroutines after 2000 flush-behind writes, want at most 1", n)
	}
	if b, err := ReadRecord(dir + "/r49"); err != nil || string(b) != "1999" {
		t.Errorf("r49 = %q, %v", b, err)
	}
}
