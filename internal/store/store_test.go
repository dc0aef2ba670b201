package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/atomicfile"
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

type splitRec struct {
	ID     string `json:"id"`
	Config string `json:"config"`
	State  string `json:"state"`
	N      int    `json:"n,omitempty"`
}

func openSplit(t *testing.T, dir string) *Records[splitRec] {
	t.Helper()
	r, err := Open[splitRec](dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Split([]string{"id", "config"}, func(v *splitRec) bool { return v.State != "creating" }); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecordsSplit: a settled record's config is written once, as plain
// JSON, and its changes rewrite only the small status record.
func TestRecordsSplit(t *testing.T) {
	dir := t.TempDir()
	r := openSplit(t, dir)
	big := strings.Repeat("x", 10000)
	if err := r.Put("a", &splitRec{ID: "a", Config: big, State: "creating"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.config.json")); !os.IsNotExist(err) {
		t.Errorf("config written while the record is not settled: %v", err)
	}
	if err := r.Put("a", &splitRec{ID: "a", Config: big, State: "ready"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "a.config.json"))
	var c map[string]any
	if err != nil || json.Unmarshal(cfg, &c) != nil || c["config"] != big || c["id"] != "a" || len(c) != 2 {
		t.Fatalf("config file %.80q: %v", cfg, err)
	}
	// A later change (even one to a config field, which must not happen)
	// leaves the config file alone.
	if err := r.Put("a", &splitRec{ID: "a", Config: "changed", State: "stopped", N: 7}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "a.config.json")); string(again) != string(cfg) {
		t.Error("config rewritten by a status change")
	}
	status, err := atomicfile.ReadRecord(filepath.Join(dir, "a.json"))
	if err != nil || strings.Contains(string(status), big[:100]) || !strings.Contains(string(status), `"stopped"`) {
		t.Errorf("status record %q: %v", status, err)
	}
	// Read back, by this and a fresh Records.
	for _, r := range []*Records[splitRec]{r, openSplit(t, dir)} {
		all, damaged, err := r.LoadAll()
		if err != nil || len(damaged) != 0 || *all["a"] != (splitRec{ID: "a", Config: big, State: "stopped", N: 7}) {
			t.Fatalf("LoadAll: %+v %v %v", all["a"], damaged, err)
		}
	}
	if err := r.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left after delete: %v", entries)
	}
}

// TestRecordsSplitMigrates: records written whole by an earlier berthd
// load as they were and are split at load; a settled record still being
// split when berthd died loads whole; a config file whose record is gone
// is removed; a damaged config makes its record damaged.
func TestRecordsSplitMigrates(t *testing.T) {
	dir := t.TempDir()
	whole := func(id string, v splitRec) {
		b, _ := json.Marshal(v)
		if err := atomicfile.WriteRecord(filepath.Join(dir, id+".json"), b, 0o600, atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
	}
	whole("old", splitRec{ID: "old", Config: "c1", State: "ready", N: 1})
	whole("creating", splitRec{ID: "creating", Config: "c2", State: "creating"})
	whole("mid", splitRec{ID: "mid", Config: "c3", State: "ready"})
	os.WriteFile(filepath.Join(dir, "mid.config.json"), []byte(`{"id":"mid","config":"c3"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "gone.config.json"), []byte(`{"id":"gone"}`), 0o600)
	whole("torn", splitRec{ID: "torn", State: "ready"})
	os.WriteFile(filepath.Join(dir, "torn.config.json"), []byte(`{"id":"to`), 0o600)

	all, damaged, err := openSplit(t, dir).LoadAll()
	if err != nil || len(damaged) != 1 || damaged[0].ID != "torn" {
		t.Fatalf("LoadAll: damaged %v, %v", damaged, err)
	}
	want := map[string]splitRec{
		"old": {ID: "old", Config: "c1", State: "ready", N: 1}, "creating": {ID: "creating", Config: "c2", State: "creating"},
		"mid": {ID: "mid", Config: "c3", State: "ready"},
	}
	for id, w := range want {
		if all[id] == nil || *all[id] != w {
			t.Errorf("%s: %+v, want %+v", id, all[id], w)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "old.config.json")); err != nil {
		t.Errorf("whole settled record not split at load: %v", err)
	}
	if st, _ := atomicfile.ReadRecord(filepath.Join(dir, "old.json")); strings.Contains(string(st), "c1") {
		t.Errorf("split record's status still holds its config: %s", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "creating.config.json")); !os.IsNotExist(err) {
		t.Errorf("a record being created was split: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone.config.json")); !os.IsNotExist(err) {
		t.Errorf("leftover config file kept: %v", err)
	}
	// Migrated, they load the same again.
	again, _, _ := openSplit(t, dir).LoadAll()
	if *again["old"] != want["old"] {
		t.Errorf("after migration: %+v", again["old"])
	}
}

func TestRecordsSplitRefusesUnknownKeys(t *testing.T) {
	r, err := Open[splitRec](t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Split([]string{"id", "nope"}, nil); err == nil {
		t.Error("a config key naming no field accepted")
	}
}

// TestRawJSON: a document is kept as JSON in the record, and the base64
// string older records hold still decodes.
func TestRawJSON(t *testing.T) {
	type doc struct {
		Config RawJSON `json:"config"`
	}
	b, err := json.Marshal(doc{Config: RawJSON(`{"a": 1}`)})
	if err != nil || string(b) != `{"config":{"a":1}}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	for _, in := range []string{`{"config":{"a":1}}`, `{"config":"eyJhIjoxfQ=="}`} {
		var d doc
		if err := json.Unmarshal([]byte(in), &d); err != nil || string(d.Config) != `{"a":1}` {
			t.Errorf("%s: %q %v", in, d.Config, err)
		}
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"config":null}`), &d); err != nil || d.Config != nil {
		t.Errorf("null: %q %v", d.Config, err)
	}
}

type benchRec struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	ConfigJSON RawJSON `json:"config"`
	Image      string  `json:"image"`
	State      string  `json:"state"`
	StartedAt  int64   `json:"started_at,omitempty"`
	Pid        int     `json:"pid,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	hidden     int
}

// BenchmarkPutSettled is a state change of a settled record with a
// kubelet-sized CRI config (~4 KiB of JSON): what every start, stop and
// exit of a container costs in encoding and writing.
func BenchmarkPutSettled(b *testing.B) {
	r, err := Open[benchRec](b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Split([]string{"id", "name", "config", "image"}, func(v *benchRec) bool { return v.State != "creating" }); err != nil {
		b.Fatal(err)
	}
	env := make([]string, 0, 60)
	for i := range 60 {
		env = append(env, fmt.Sprintf(`{"key":"SERVICE_%d_PORT","value":"tcp://10.96.0.%d:443"}`, i, i))
	}
	cfg := RawJSON(`{"metadata":{"name":"app"},"image":{"image":"registry.example/app:1"},"envs":[` + strings.Join(env, ",") + `]}`)
	v := &benchRec{ID: "c1", Name: "app_pod_ns_uid_0", ConfigJSON: cfg, Image: "sha256:0123", State: "created"}
	if err := r.Put("c1", v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v.Pid = i
		v.State = []string{"running", "exited"}[i%2]
		if err := r.Put("c1", v); err != nil {
			b.Fatal(err)
		}
	}
}
