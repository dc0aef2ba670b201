package store

import "sort"

// List returns copies of the visible records keep accepts, oldest first by
// createdAt: the order the CRI list calls answer in. Records created in the
// same nanosecond come in no particular order.
func (t *Table[T]) List(keep func(*T) bool, createdAt func(*T) int64) []*T {
	// Only the kept records are copied.
	var out []*T
	t.Select(keep, func(v *T) { out = append(out, t.clone(v)) })
	sort.Slice(out, func(i, j int) bool { return createdAt(out[i]) < createdAt(out[j]) })
	return out
}

// Select calls fn with every visible record keep accepts, in no particular
// order. keep and fn see the records themselves, under the table's read
// lock: they must only read them, copy what they keep, and not call back
// into the table. For hot readers that need a few fields of many records
// (a list reply) and not a copy of each.
func (t *Table[T]) Select(keep func(*T) bool, fn func(*T)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, v := range t.byID {
		if !t.hidden(v) && keep(v) {
			fn(v)
		}
	}
}

// LabelsMatch reports whether have holds every label of want with the same
// value: a CRI label selector. An empty want matches everything.
func LabelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
