package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// A published layer must never be a directory of empty files after a power
// cut: a layer that exists is not fetched again. Flushing its files before
// the rename that publishes it put a syncfs on every pull's path (1.3-1.7 s
// of the bench's 1 GiB layer, ~25% of the pull, writing what the kernel
// had not yet written back). Instead a layer is published at once with an
// unsynced marker naming the boot it was written in, and one goroutine
// flushes the filesystem behind the pulls and then removes the markers.
// Only a new boot can have lost unflushed data (a crash of berthd leaves
// the page cache alone), so Open drops every layer whose marker names
// another boot, or cannot be read, and queues those of this boot for the
// flush again (settleUnsynced); the
// image service then drops the records of images that lost a layer
// (Service.recover), and they are pulled again when needed.
//
// The flush waits until no layer has been published for flushQuiet (or the
// oldest waiting one has waited flushMaxWait). A flush started at once
// behind each pull made the next pull's layers and the first container of
// the image wait behind it (their own fsyncs queue behind a syncfs that is
// writing a gigabyte): the bench's first container after the 1 GiB pull
// took 339 ms instead of 48, and a 5-layer pull got slower than before.
// By flushQuiet, the kernel's own writeback (dirty_expire_centisecs, 30 s by
// default) has written most of it, and the syncfs only waits for the rest.
// berthd's stop does not wait: Flush flushes at once.

// flushQuiet and flushMaxWait are the defaults of syncBehind's wait.
const (
	flushQuiet   = 30 * time.Second
	flushMaxWait = 2 * time.Minute
)

// unsyncedFile, in a layer's directory, holds "<boot id> <sequence>" until
// a syncfs that began after the layer was published has returned.
const unsyncedFile = "unsynced"

// bootIDPath is the kernel's id of the running boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// syncBehind is the Store's background flusher.
type syncBehind struct {
	// boot is the running boot's id; "" when the kernel gives none, and
	// layers are then flushed before they are published.
	boot string
	// quiet and maxWait: the flush starts once no layer has been queued
	// for quiet, or the oldest queued has waited maxWait (flushQuiet and
	// flushMaxWait; tests shorten them).
	quiet, maxWait time.Duration

	mu      sync.Mutex
	idle    *sync.Cond // broadcast when running turns false
	seq     uint64
	queue   []pendingSync
	first   time.Time // when the oldest layer in queue was queued
	last    time.Time // when the newest was
	running bool
	now     bool          // Flush is waiting: no more quiet
	wake    chan struct{} // Flush wakes the waiting loop (buffered, 1)
}

// pendingSync is a published layer whose marker holds token.
type pendingSync struct {
	chainID digest.Digest
	token   string
}

func readBootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// markUnsynced writes the marker into the layer directory dir (not yet
// published) and returns its token. No fsync: the journal orders the
// marker's creation before the rename that publishes the layer, and a
// marker whose content a power cut lost reads as another boot's.
func (s *Store) markUnsynced(dir string) (string, error) {
	b := &s.syncer
	b.mu.Lock()
	b.seq++
	token := fmt.Sprintf("%s %d", b.boot, b.seq)
	b.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, unsyncedFile), []byte(token), 0o644); err != nil {
		return "", err
	}
	return token, nil
}

// syncLater queues the published layer chainID for the background flush.
func (s *Store) syncLater(chainID digest.Digest, token string) {
	b := &s.syncer
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if len(b.queue) == 0 {
		b.first = now
	}
	b.last = now
	b.queue = append(b.queue, pendingSync{chainID, token})
	if !b.running {
		b.running = true
		go s.flushLoop()
	}
}

// flushLoop waits for the queue to be quiet (or for Flush), flushes the
// layers' filesystem for the layers queued, then removes their markers,
// until the queue is empty. A batch whose syncfs fails keeps its markers:
// the next Open decides.
func (s *Store) flushLoop() {
	b := &s.syncer
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running = false
			b.idle.Broadcast()
			b.mu.Unlock()
			return
		}
		var wait time.Duration
		if !b.now {
			wait = time.Until(b.last.Add(b.quiet))
			wait = min(wait, time.Until(b.first.Add(b.maxWait)))
		}
		var batch []pendingSync
		if wait <= 0 {
			batch, b.queue = b.queue, nil
		}
		b.mu.Unlock()
		if batch == nil {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.wake:
				t.Stop()
			}
			continue
		}
		if syncfs(s.layersDir()) != nil {
			continue
		}
		for _, p := range batch {
			s.clearMarker(p.chainID, p.token)
		}
	}
}

// clearMarker removes chainID's marker if it still holds token: the layer
// may have been removed and published again since it was queued, with a
// marker the flush just done does not cover.
func (s *Store) clearMarker(chainID digest.Digest, token string) {
	path := filepath.Join(s.layerDir(chainID), unsyncedFile)
	if b, err := os.ReadFile(path); err == nil && string(b) == token {
		os.Remove(path)
	}
}

// Flush flushes every layer published so far, without waiting for the
// queue to be quiet, and returns when that is done (or failed). berthd
// calls it on its way out, so that a clean stop followed by a reboot drops
// nothing.
func (s *Store) Flush() {
	b := &s.syncer
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return
	}
	b.now = true
	select {
	case b.wake <- struct{}{}:
	default:
	}
	for b.running {
		b.idle.Wait()
	}
	b.now = false
}

// settleUnsynced runs in Open: layers published unflushed in an earlier
// boot are removed; those of this boot (a berthd that stopped before their
// flush: killed, or crashed) are queued for the background flush again,
// since this boot's page cache still holds whatever was not written back.
// Flushing them here instead would put a syncfs of up to gigabytes on
// berthd's start.
func (s *Store) settleUnsynced() error {
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return err
	}
	var drop []string
	for _, e := range entries {
		dir := filepath.Join(s.layersDir(), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, unsyncedFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		token := string(b)
		boot, seqText, _ := strings.Cut(token, " ")
		algo, hex, _ := strings.Cut(e.Name(), "-")
		chainID := digest.NewDigestFromEncoded(digest.Algorithm(algo), hex)
		if err != nil || boot == "" || boot != s.syncer.boot || chainID.Validate() != nil {
			drop = append(drop, dir)
			continue
		}
		// New tokens must differ from the queued ones (clearMarker).
		if seq, err := strconv.ParseUint(seqText, 10, 64); err == nil {
			s.syncer.seq = max(s.syncer.seq, seq)
		}
		s.syncLater(chainID, token)
	}
	for _, dir := range drop {
		if err := s.removeDir(dir, s.layersDir()); err != nil {
			return fmt.Errorf("drop layer published unflushed before a reboot: %w", err)
		}
	}
	return nil
}
