// Package store keeps berthd's metadata records (sandboxes, containers) on
// disk, one record file (atomicfile.WriteRecord: JSON, updated in place) per
// object, each written atomically before the RPC that changed it answers.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Records is a directory of JSON records of type T keyed by id.
type Records[T any] struct {
	dir string
	mu  sync.Mutex // serialises writes (a write is ~0.02 ms)

	// Set by Split (split.go); codec nil: one file per record.
	codec         *splitCodec
	settled       func(*T) bool
	configWritten map[string]bool // ids whose config file is written; guarded by mu
}

// Open creates dir if needed and removes temp files a crash left mid-write.
func Open[T any](dir string) (*Records[T], error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &Records[T]{dir: dir}, nil
}

func (r *Records[T]) path(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || strings.HasPrefix(id, ".") {
		return "", fmt.Errorf("record id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(r.dir, id+".json"), nil
}

// Put writes v as the record id: atomically before it returns, durably
// soon after (atomicfile.FlushBehind: a power cut may lose its latest
// versions; a record a power cut loses or damages is dropped at recovery,
// and what it named swept as an orphan).
func (r *Records[T]) Put(id string, v *T) error {
	p, err := r.path(id)
	if err != nil {
		return err
	}
	// Encoded before the lock: only the writes need it. A settled record
	// of a split store writes its status here and its config once
	// (split.go).
	split := r.codec != nil && r.settled(v)
	var data []byte
	if split {
		data, err = r.codec.encodeStatus(v)
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		return fmt.Errorf("encode record %s: %w", id, err)
	}
	// One writer per file at a time (WriteRecord's rule): a record is
	// normally changed under its object's lock, but not every caller is.
	r.mu.Lock()
	defer r.mu.Unlock()
	if split {
		if err := r.writeConfigOnce(id, v); err != nil {
			return err
		}
	}
	return atomicfile.WriteRecord(p, data, 0o600, atomicfile.FlushBehind)
}

// Get reads one record; ErrNotFound if absent.
func (r *Records[T]) Get(id string) (*T, error) {
	p, err := r.path(id)
	if err != nil {
		return nil, err
	}
	data, err := atomicfile.ReadRecord(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("record %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", id, err)
	}
	data, split, err := r.withConfig(id, data)
	if err != nil {
		return nil, err
	}
	if split {
		r.mu.Lock()
		r.configWritten[id] = true
		r.mu.Unlock()
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("record %s is corrupt: %w", id, err)
	}
	return v, nil
}

// Delete removes the record; an absent record is not an error.
func (r *Records[T]) Delete(id string) error {
	p, err := r.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete record %s: %w", id, err)
	}
	if r.codec != nil {
		// After the record file: a config file alone is a leftover.
		if err := os.Remove(r.configPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete record %s: %w", id, err)
		}
		r.mu.Lock()
		delete(r.configWritten, id)
		r.mu.Unlock()
	}
	// Flushed behind too: a record a power cut brings back names things
	// already gone, which recovery tolerates.
	go atomicfile.SyncDir(r.dir)
	return nil
}

// Damaged is a record file that could not be read at load.
type Damaged struct {
	ID  string
	Err error
}

// LoadAll reads every record. A corrupt or truncated file does not stop
// the load: it is returned in damaged for the caller to report and clean.
func (r *Records[T]) LoadAll() (records map[string]*T, damaged []Damaged, err error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("load store %s: %w", r.dir, err)
	}
	records = map[string]*T{}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || atomicfile.IsTemp(e.Name()) || strings.HasSuffix(e.Name(), configSuffix) {
			continue
		}
		v, err := r.Get(id)
		if err != nil {
			damaged = append(damaged, Damaged{ID: id, Err: err})
			continue
		}
		records[id] = v
	}
	r.migrate(records, names)
	return records, damaged, nil
}
