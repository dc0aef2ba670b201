package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".a.json.tmp-1"), []byte("{"), 0o600) // crash leftover
	r, err := Open[rec](dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".a.json.tmp-1")); !os.IsNotExist(err) {
		t.Error("temp leftover not removed at open")
	}
	if err := r.Put("a", &rec{Name: "x", N: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get("a")
	if err != nil || got.Name != "x" || got.N != 1 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := r.Get("missing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing record: %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden"} {
		if err := r.Put(bad, &rec{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Put(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	// A truncated record is reported, the rest still load.
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"name": "trunc`), 0o600)
	all, damaged, err := r.LoadAll()
	if err != nil || len(all) != 1 || all["a"] == nil || len(damaged) != 1 || damaged[0].ID != "b" {
		t.Fatalf("LoadAll: %v %v %v", all, damaged, err)
	}
	if err := r.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("a"); err != nil {
		t.Errorf("second delete: %v", err)
	}
}
