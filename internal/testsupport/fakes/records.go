package fakes

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/store"
)

// Records keeps records as the JSON a record file would hold (so what is
// not persisted is lost at LoadAll, as on disk), and fails a Put that
// FailPut refuses.
type Records[T any] struct {
	R *Recorder
	// FailPut, if set, is asked before each Put; its error fails it.
	FailPut func(id string, v *T) error

	mu   sync.Mutex
	data map[string][]byte
}

// FailOnce fails, with err, the first Put of a record match accepts (a
// write fails once; the rollback's own writes go through).
func (f *Records[T]) FailOnce(err error, match func(*T) bool) {
	failed := false
	f.FailPut = func(id string, v *T) error {
		if !failed && match(v) {
			failed = true
			return err
		}
		return nil
	}
}

// IDs returns the ids of the records kept.
func (f *Records[T]) IDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.data))
}

// Get decodes record id; nil if absent.
func (f *Records[T]) Get(id string) *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.data[id]
	if !ok {
		return nil
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil
	}
	return v
}

// SetRaw stores data as record id (a damaged record, or one an earlier
// run wrote).
func (f *Records[T]) SetRaw(id string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data == nil {
		f.data = map[string][]byte{}
	}
	f.data[id] = data
}

// CheckRecoverDrops checks a manager's recovery (recover, of a manager
// opened on f after the call) on two unreadable records: "torn" (a write
// cut short) and "badconfig" (whose CRI config is not protojson) are
// dropped; and a load that fails fails recovery.
func CheckRecoverDrops[T any](t testing.TB, f *Records[T], recover func() error) {
	t.Helper()
	f.SetRaw("torn", []byte(`{"id":"torn","sta`))
	f.SetRaw("badconfig", []byte(`{"id":"badconfig","name":"x","config":"bm90IGpzb24=","state":"running"}`))
	if err := recover(); err != nil {
		t.Fatal(err)
	}
	if ids := f.IDs(); len(ids) != 0 {
		t.Errorf("unreadable records kept: %v", ids)
	}
	injected := errors.New("load fails")
	f.R.Fail("Records.LoadAll", injected)
	defer f.R.Fail("Records.LoadAll", nil)
	if err := recover(); !errors.Is(err, injected) {
		t.Errorf("recovery whose load failed: %v", err)
	}
}

// WaitOne polls until the only record is one match accepts, and returns
// its id; false after a few seconds.
func (f *Records[T]) WaitOne(match func(*T) bool) (string, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ids := f.IDs(); len(ids) == 1 {
			if v := f.Get(ids[0]); v != nil && match(v) {
				return ids[0], true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "", false
}

func (f *Records[T]) Put(id string, v *T) error {
	if err := f.R.Call("Records.Put", id); err != nil {
		return err
	}
	if f.FailPut != nil {
		if err := f.FailPut(id, v); err != nil {
			return err
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f.SetRaw(id, b)
	return nil
}

func (f *Records[T]) Delete(id string) error {
	if err := f.R.Call("Records.Delete", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.data, id)
	return nil
}

func (f *Records[T]) LoadAll() (map[string]*T, []store.Damaged, error) {
	if err := f.R.Call("Records.LoadAll"); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := map[string]*T{}
	var damaged []store.Damaged
	for _, id := range slices.Sorted(maps.Keys(f.data)) {
		v := new(T)
		if err := json.Unmarshal(f.data[id], v); err != nil {
			damaged = append(damaged, store.Damaged{ID: id, Err: fmt.Errorf("record %s is corrupt: %w", id, err)})
			continue
		}
		recs[id] = v
	}
	return recs, damaged, nil
}
