package atomicfile

import (
	"sync"

	"golang.org/x/sys/unix"
)

// maxPendingFlushes bounds the paths waiting for the flusher. Past it, a
// writer flushes its own paths before returning: a stalled disk then slows
// the writers down instead of piling up work (and, before the flusher,
// one goroutine and one open descriptor per write).
const maxPendingFlushes = 1024

// flusher syncs flush-behind writes to disk, one goroutine at a time, by
// path: no descriptor is held while a path waits, and a path written again
// before its flush started is flushed once.
type flusher struct {
	// sync makes one path durable (fdatasync of a file, fsync of a
	// directory); a test's may block like a stalled disk.
	sync func(path string)

	mu       sync.Mutex
	files    map[string]bool // files to sync; guarded by mu
	dirs     map[string]bool // directories to sync, after the files; guarded by mu
	running  bool            // a flush goroutine runs; guarded by mu
	inflight int             // paths of the batch being flushed; guarded by mu
}

func newFlusher(sync func(string)) *flusher {
	return &flusher{sync: sync, files: map[string]bool{}, dirs: map[string]bool{}}
}

// background is the flusher of every FlushBehind write of the process.
var background = newFlusher(syncPath)

// SyncBehind has the background flusher make file (if not "") and then dir
// (if not "") durable soon, without waiting for it: what FlushBehind does
// for records, for other files whose loss after a power cut recovery
// tolerates.
func SyncBehind(file, dir string) { background.add(file, dir) }

// add queues file and dir; with the queue full it syncs them itself.
func (f *flusher) add(file, dir string) {
	f.mu.Lock()
	if f.inflight+len(f.files)+len(f.dirs) >= maxPendingFlushes {
		f.mu.Unlock()
		if file != "" {
			f.sync(file)
		}
		if dir != "" {
			f.sync(dir)
		}
		return
	}
	if file != "" {
		f.files[file] = true
	}
	if dir != "" {
		f.dirs[dir] = true
	}
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
	}
}

// run flushes until nothing is pending, then ends.
func (f *flusher) run() {
	for {
		f.mu.Lock()
		f.inflight = 0
		files, dirs := f.files, f.dirs
		if len(files) == 0 && len(dirs) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.files, f.dirs = map[string]bool{}, map[string]bool{}
		f.inflight = len(files) + len(dirs)
		f.mu.Unlock()
		for p := range files {
			f.sync(p)
		}
		for p := range dirs {
			f.sync(p)
		}
	}
}

// syncPath makes path durable; a path gone meanwhile needs nothing.
func syncPath(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Fdatasync(fd)
	unix.Close(fd)
}
