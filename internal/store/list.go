package store

import "sort"

// List returns copies of the visible records keep accepts, oldest first by
// createdAt: the order the CRI list calls answer in. Records created in the
// same nanosecond come in no particular order.
func (t *Table[T]) List(keep func(*T) bool, createdAt func(*T) int64) []*T {
	// keep reads the records in place, under the read lock: only the kept
	// ones are copied.
	var out []*T
	t.mu.RLock()
	for _, v := range t.byID {
		if !t.hidden(v) && keep(v) {
			out = append(out, t.clone(v))
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return createdAt(out[i]) < createdAt(out[j]) })
	return out
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
