package store

import (
	"slices"
	"testing"
)

func TestLabelsMatch(t *testing.T) {
	have := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		name string
		want map[string]string
		ok   bool
	}{
		{"nil selector", nil, true},
		{"empty selector", map[string]string{}, true},
		{"one label", map[string]string{"app": "web"}, true},
		{"every label", map[string]string{"app": "web", "tier": "front"}, true},
		{"other value", map[string]string{"app": "db"}, false},
		{"missing label", map[string]string{"zone": "a"}, false},
		{"empty value is not absent", map[string]string{"zone": ""}, true},
		{"one of two wrong", map[string]string{"app": "web", "tier": "back"}, false},
	} {
		if got := LabelsMatch(have, tc.want); got != tc.ok {
			t.Errorf("%s: LabelsMatch(%v) = %v, want %v", tc.name, tc.want, got, tc.ok)
		}
	}
}

func TestTableList(t *testing.T) {
	tab := openTable(t)
	created := map[string]int64{"c": 1, "a": 2, "b": 3, "hidden": 0}
	for _, o := range []*obj{
		{ID: "a", Name: "a", State: "ready"},
		{ID: "b", Name: "b", State: "stopped"},
		{ID: "c", Name: "c", State: "ready"},
		{ID: "hidden", Name: "hidden", State: "creating"},
	} {
		if err := tab.Put(o); err != nil {
			t.Fatal(err)
		}
	}
	createdAt := func(o *obj) int64 { return created[o.ID] }
	for _, tc := range []struct {
		name string
		keep func(*obj) bool
		want []string
	}{
		{"all, oldest first, hidden left out", func(*obj) bool { return true }, []string{"c", "a", "b"}},
		{"some", func(o *obj) bool { return o.State == "ready" }, []string{"c", "a"}},
		{"none", func(*obj) bool { return false }, nil},
	} {
		var got []string
		for _, o := range tab.List(tc.keep, createdAt) {
			got = append(got, o.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: List = %v, want %v", tc.name, got, tc.want)
		}
	}
	// List hands out copies, as Each does.
	tab.List(func(*obj) bool { return true }, createdAt)[0].State = "mangled"
	if tab.Current("c").State != "ready" {
		t.Error("List returned the live record")
	}
}
