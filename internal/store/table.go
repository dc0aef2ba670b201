package store

import (
	"fmt"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Table indexes the records of one kind of object (sandboxes, containers)
// by id and by name, persists them through Records, and serialises the
// operations on one object with a lock per id.
//
// Locking: take an object's Lock before changing it; mu (inside) guards the
// maps and every indexed record's fields, so change a record only through
// Update, and read one only through the copies Get and Each hand out (or
// while holding its Lock, which excludes every writer).
type Table[T any] struct {
	kind       string
	records    Persister[T]
	id         func(*T) string
	name       func(*T) string
	hidden     func(*T) bool
	clone      func(*T) *T
	delivered  func(*T) *bool
	transition func(before, after *T) error

	locks KeyedMutex
	mu    sync.RWMutex
	byID  map[string]*T
	names map[string]string // name -> id
}

// TableOptions describe the records of a Table.
type TableOptions[T any] struct {
	// Kind names the objects in errors ("container", "pod sandbox").
	Kind string
	// ID and Name read a record's id and its unique name.
	ID, Name func(*T) string
	// Hidden reports a record not visible through Get and Each (one still
	// being created); nil: none is.
	Hidden func(*T) bool
	// Clone copies a record for readers; nil: a shallow copy.
	Clone func(*T) *T
	// Delivered points at the record's flag saying the create that made it
	// answered a live client (see Reserved); nil: creates are not retried.
	Delivered func(*T) *bool
	// Transition is the object's state machine: it refuses (with an error
	// wrapping an errdefs sentinel) an Update that would move a record
	// from before's state to after's; nil: every change is allowed.
	Transition func(before, after *T) error
	// Records is where the records are kept; nil: the files under the
	// table's dir (Open). Unit tests pass a fake that can fail a write.
	Records Persister[T]
	// ConfigKeys and Settled split the record files (Records.Split):
	// ConfigKeys are the JSON keys written once, when Settled first
	// holds; nil: one file per record.
	ConfigKeys []string
	Settled    func(*T) bool
}

// Persister keeps a Table's records: *Records in berthd.
type Persister[T any] interface {
	Put(id string, v *T) error
	Delete(id string) error
	LoadAll() (map[string]*T, []Damaged, error)
}

// OpenTable opens the records under dir; Load and Index fill the table.
func OpenTable[T any](dir string, o TableOptions[T]) (*Table[T], error) {
	recs := o.Records
	if recs == nil {
		files, err := Open[T](dir)
		if err != nil {
			return nil, err
		}
		if o.ConfigKeys != nil {
			if err := files.Split(o.ConfigKeys, o.Settled); err != nil {
				return nil, err
			}
		}
		recs = files
	}
	if o.Hidden == nil {
		o.Hidden = func(*T) bool { return false }
	}
	if o.Clone == nil {
		o.Clone = func(v *T) *T { c := *v; return &c }
	}
	return &Table[T]{
		kind: o.Kind, records: recs, id: o.ID, name: o.Name, hidden: o.Hidden, clone: o.Clone, delivered: o.Delivered, transition: o.Transition,
		byID: map[string]*T{}, names: map[string]string{},
	}, nil
}

// Lock locks the object id for an operation and returns its unlock.
func (t *Table[T]) Lock(id string) func() { return t.locks.Lock(id) }

// Load reads every record from disk (for recovery); see Records.LoadAll.
func (t *Table[T]) Load() (map[string]*T, []Damaged, error) { return t.records.LoadAll() }

// DeleteRecord removes a record file only: one too damaged to index.
func (t *Table[T]) DeleteRecord(id string) error { return t.records.Delete(id) }

// Index adds a loaded record without writing it.
func (t *Table[T]) Index(v *T) {
	t.mu.Lock()
	t.byID[t.id(v)] = v
	t.names[t.name(v)] = t.id(v)
	t.mu.Unlock()
}

// Put persists v, atomically, and indexes it. The caller holds v's Lock.
func (t *Table[T]) Put(v *T) error {
	if err := t.records.Put(t.id(v), v); err != nil {
		return fmt.Errorf("persist %s %s: %w", t.kind, t.id(v), err)
	}
	t.Index(v)
	return nil
}

// Update applies change to v under the table's lock and persists the
// result. A change the table's Transition refuses leaves v as it was and
// returns its error. A change whose write fails stays in memory and the
// error is returned: the changes recorded here report what already
// happened to the object (a process started, exited, was killed), so
// undoing it in memory would make the table lie about it; the next
// successful write stores it, and a restart before that reconciles the
// older record with the supervisor (recovery). The caller holds v's Lock.
func (t *Table[T]) Update(v *T, change func(*T)) error {
	t.mu.Lock()
	before := *v
	change(v)
	if t.transition != nil {
		if err := t.transition(&before, v); err != nil {
			*v = before
			t.mu.Unlock()
			return err
		}
	}
	snapshot := *v
	t.mu.Unlock()
	if err := t.records.Put(t.id(v), &snapshot); err != nil {
		return fmt.Errorf("persist %s %s: %w", t.kind, t.id(v), err)
	}
	return nil
}

// Forget removes v from disk and from the index. The caller holds v's Lock.
func (t *Table[T]) Forget(v *T) error {
	id := t.id(v)
	if err := t.records.Delete(id); err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.byID, id)
	if t.names[t.name(v)] == id {
		delete(t.names, t.name(v))
	}
	t.mu.Unlock()
	return nil
}

// Reserved tells a create for name how to go on. kubelet gives up on a
// create after its deadline and retries with the same name: if the record
// holding name was made by a create whose answer no live client received,
// Reserved returns its id (the retry gets it); if a client got it, the name
// is taken (AlreadyExists); if none holds it, "" and nil: create it.
func (t *Table[T]) Reserved(name string) (string, error) {
	prev := t.ByName(name)
	if prev == nil {
		return "", nil
	}
	if t.delivered != nil && !*t.delivered(prev) && !t.hidden(prev) {
		return t.id(prev), nil
	}
	return "", fmt.Errorf("%s name %q is reserved by %s: %w", t.kind, name, t.id(prev), errdefs.ErrAlreadyExists)
}

// MarkDelivered notes that a live client got the record id back. Best
// effort: a lost mark only means a later duplicate name is returned
// instead of refused.
func (t *Table[T]) MarkDelivered(id string) error {
	unlock := t.Lock(id)
	defer unlock()
	v := t.Current(id)
	if v == nil || t.delivered == nil || *t.delivered(v) {
		return nil
	}
	return t.Update(v, func(v *T) { *t.delivered(v) = true })
}

// Current is the live record of id (not a copy, hidden ones included), or
// nil. Read its fields only while holding its Lock.
func (t *Table[T]) Current(id string) *T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byID[id]
}

// ByName is a copy of the record holding name (hidden ones included), or nil.
func (t *Table[T]) ByName(name string) *T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if v, ok := t.byID[t.names[name]]; ok {
		return t.clone(v)
	}
	return nil
}

// Get is a copy of the visible record id, which may be a unique prefix of
// an id (crictl passes short ids): NotFound if none, InvalidArgument if
// empty or ambiguous.
func (t *Table[T]) Get(id string) (*T, error) {
	if id == "" {
		return nil, fmt.Errorf("%s id is empty: %w", t.kind, errdefs.ErrInvalidArgument)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if v, ok := t.byID[id]; ok && !t.hidden(v) {
		return t.clone(v), nil
	}
	var found *T
	for full, v := range t.byID {
		if strings.HasPrefix(full, id) && !t.hidden(v) {
			if found != nil {
				return nil, fmt.Errorf("%s id prefix %q is ambiguous: %w", t.kind, id, errdefs.ErrInvalidArgument)
			}
			found = v
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s %q: %w", t.kind, id, errdefs.ErrNotFound)
	}
	return t.clone(found), nil
}

// Each calls fn with a copy of every visible record.
func (t *Table[T]) Each(fn func(*T)) {
	t.mu.RLock()
	copies := make([]*T, 0, len(t.byID))
	for _, v := range t.byID {
		if !t.hidden(v) {
			copies = append(copies, t.clone(v))
		}
	}
	t.mu.RUnlock()
	for _, v := range copies {
		fn(v)
	}
}

// IDs are the ids of every record, hidden ones included (orphan sweeps).
func (t *Table[T]) IDs() map[string]bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ids := make(map[string]bool, len(t.byID))
	for id := range t.byID {
		ids[id] = true
	}
	return ids
}
