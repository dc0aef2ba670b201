package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

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
// another boot, or cannot be read, and flushes those of this boot; the
// image service then drops the records of images that lost a layer
// (Service.recover), and they are pulled again when needed.

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

	mu      sync.Mutex
	idle    *sync.Cond // broadcast when running turns false
	seq     uint64
	queue   []pendingSync
	running bool
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
	b.queue = append(b.queue, pendingSync{chainID, token})
	if !b.running {
		b.running = true
		go s.flushLoop()
	}
}

// flushLoop flushes the layers' filesystem for each batch queued, then
// removes the batch's markers, until the queue is empty. A batch whose
// syncfs fails keeps its markers: the next Open decides.
func (s *Store) flushLoop() {
	b := &s.syncer
	for {
		b.mu.Lock()
		batch := b.queue
		b.queue = nil
		if len(batch) == 0 {
			b.running = false
			b.idle.Broadcast()
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
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

// Flush waits until every layer published so far has been flushed (or its
// flush failed). berthd calls it on its way out, so that a clean stop
// followed by a reboot drops nothing.
func (s *Store) Flush() {
	b := &s.syncer
	b.mu.Lock()
	for b.running {
		b.idle.Wait()
	}
	b.mu.Unlock()
}

// settleUnsynced runs in Open: layers published unflushed in an earlier
// boot are removed, those of this boot flushed (a crashed berthd's). A
// flush that fails removes them as well: nothing then says their files
// are whole.
func (s *Store) settleUnsynced() error {
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return err
	}
	var thisBoot, drop []string
	for _, e := range entries {
		dir := filepath.Join(s.layersDir(), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, unsyncedFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if boot, _, _ := strings.Cut(string(b), " "); err == nil && boot != "" && boot == s.syncer.boot {
			thisBoot = append(thisBoot, dir)
		} else {
			drop = append(drop, dir)
		}
	}
	if len(thisBoot) > 0 {
		if syncfs(s.layersDir()) == nil {
			for _, dir := range thisBoot {
				if err := os.Remove(filepath.Join(dir, unsyncedFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		} else {
			drop = append(drop, thisBoot...)
		}
	}
	for _, dir := range drop {
		if err := s.removeDir(dir, s.layersDir()); err != nil {
			return fmt.Errorf("drop layer published unflushed before a reboot: %w", err)
		}
	}
	return nil
}
