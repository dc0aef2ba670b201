package store

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

type obj struct {
	ID, Name, State string
}

func openTable(t *testing.T) *Table[obj] {
	t.Helper()
	tab, err := OpenTable(t.TempDir(), TableOptions[obj]{
		Kind:   "thing",
		ID:     func(o *obj) string { return o.ID },
		Name:   func(o *obj) string { return o.Name },
		Hidden: func(o *obj) bool { return o.State == "creating" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestTable(t *testing.T) {
	tab := openTable(t)
	a := &obj{ID: "aaa111", Name: "a", State: "ready"}
	b := &obj{ID: "aab222", Name: "b", State: "creating"}
	for _, o := range []*obj{a, b} {
		if err := tab.Put(o); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id      string
		want    string
		wantErr error
	}{
		{"aaa111", "aaa111", nil},
		{"aaa", "aaa111", nil},
		{"aa", "aaa111", nil}, // the other match is hidden
		{"aab222", "", errdefs.ErrNotFound},
		{"zzz", "", errdefs.ErrNotFound},
		{"", "", errdefs.ErrInvalidArgument},
	} {
		got, err := tab.Get(tc.id)
		if !errors.Is(err, tc.wantErr) || (err == nil && got.ID != tc.want) {
			t.Errorf("Get(%q) = %v, %v; want %q, %v", tc.id, got, err, tc.want, tc.wantErr)
		}
	}
	// Get hands out copies: changing one does not change the table.
	c, _ := tab.Get("aaa111")
	c.State = "mangled"
	if tab.Current("aaa111").State != "ready" {
		t.Error("Get returned the live record")
	}
	if err := tab.Update(b, func(o *obj) { o.State = "ready" }); err != nil {
		t.Fatal(err)
	}
	var seen []string
	tab.Each(func(o *obj) { seen = append(seen, o.ID) })
	sort.Strings(seen)
	if len(seen) != 2 {
		t.Errorf("Each saw %v", seen)
	}
	if _, err := tab.Get("aa"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if got := tab.ByName("b"); got == nil || got.ID != "aab222" {
		t.Errorf("ByName: %v", got)
	}

	// Reopen: the records were persisted, Update's included.
	recs, damaged, err := tab.Load()
	if err != nil || len(damaged) != 0 || recs["aab222"].State != "ready" {
		t.Fatalf("Load: %v %v %v", recs, damaged, err)
	}
	if err := tab.Forget(a); err != nil {
		t.Fatal(err)
	}
	if tab.Current("aaa111") != nil || tab.ByName("a") != nil || tab.IDs()["aaa111"] {
		t.Error("Forget left the record indexed")
	}
	if recs, _, _ := tab.Load(); recs["aaa111"] != nil {
		t.Error("Forget left the record on disk")
	}
}

type created struct {
	ID, Name  string
	Creating  bool
	Delivered bool
}

func TestTableReservedAndDelivered(t *testing.T) {
	tab, err := OpenTable(t.TempDir(), TableOptions[created]{
		Kind: "thing", ID: func(c *created) string { return c.ID }, Name: func(c *created) string { return c.Name },
		Hidden:    func(c *created) bool { return c.Creating },
		Delivered: func(c *created) *bool { return &c.Delivered },
	})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tab.Reserved("free"); id != "" || err != nil {
		t.Errorf("free name: %q %v", id, err)
	}
	tab.Put(&created{ID: "1", Name: "undelivered"})
	tab.Put(&created{ID: "2", Name: "in-progress", Creating: true})
	tab.Put(&created{ID: "3", Name: "delivered", Delivered: true})
	for name, want := range map[string]struct {
		id  string
		err error
	}{
		"undelivered": {"1", nil},                     // kubelet's retry gets the earlier create
		"in-progress": {"", errdefs.ErrAlreadyExists}, // (flight.Group joins those instead)
		"delivered":   {"", errdefs.ErrAlreadyExists}, // a client has it: the name is taken
	} {
		id, err := tab.Reserved(name)
		if id != want.id || !errors.Is(err, want.err) {
			t.Errorf("Reserved(%q) = %q, %v; want %q, %v", name, id, err, want.id, want.err)
		}
	}
	if err := tab.MarkDelivered("1"); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Reserved("undelivered"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("after MarkDelivered: %v", err)
	}
	if recs, _, _ := tab.Load(); !recs["1"].Delivered {
		t.Error("MarkDelivered was not persisted")
	}
	if err := tab.MarkDelivered("missing"); err != nil {
		t.Errorf("MarkDelivered of an unknown id: %v", err)
	}
}

// TestTableTransition: an update the state machine refuses changes
// nothing, in memory or on disk.
func TestTableTransition(t *testing.T) {
	tab, err := OpenTable(t.TempDir(), TableOptions[obj]{
		Kind: "thing",
		ID:   func(o *obj) string { return o.ID },
		Name: func(o *obj) string { return o.Name },
		Transition: func(before, after *obj) error {
			if before.State == "done" && after.State != "done" {
				return fmt.Errorf("%s -> %s: %w", before.State, after.State, errdefs.ErrFailedPrecondition)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := &obj{ID: "a", Name: "a", State: "ready"}
	if err := tab.Put(o); err != nil {
		t.Fatal(err)
	}
	if err := tab.Update(o, func(o *obj) { o.State = "done" }); err != nil {
		t.Fatalf("allowed update: %v", err)
	}
	if err := tab.Update(o, func(o *obj) { o.State, o.Name = "ready", "renamed" }); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("refused update: %v", err)
	}
	if o.State != "done" || o.Name != "a" {
		t.Errorf("a refused update changed the record: %+v", o)
	}
	recs, _, err := tab.Load()
	if err != nil || recs["a"].State != "done" {
		t.Errorf("record on disk %+v, %v; want done", recs["a"], err)
	}
}

func TestTransitionsCheck(t *testing.T) {
	m := Transitions[string]{"a": {"b"}, "b": {"c"}}
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{{"a", "b", true}, {"b", "c", true}, {"a", "a", true}, {"a", "c", false}, {"c", "a", false}, {"b", "a", false}} {
		err := m.Check("thing", "x", tc.from, tc.to)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition)) {
			t.Errorf("%s -> %s: %v, want allowed %v (else FailedPrecondition)", tc.from, tc.to, err, tc.ok)
		}
	}
	if got := fmt.Sprint(m.Moves()); got != "[a -> b b -> c]" {
		t.Errorf("moves %s", got)
	}
}
