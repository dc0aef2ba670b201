package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

func TestInflightJoinsAndSurvivesCancel(t *testing.T) {
	var f Inflight[string]
	var runs atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (string, error) {
		runs.Add(1)
		<-release
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "id-1", nil
	}
	// The first caller gives up (kubelet's deadline); its work goes on.
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, _, err := f.Do(ctx1, "pod_ns_uid_0", fn); first <- err }()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	// Retries with the same name join the running call.
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, joined, err := f.Do(context.Background(), "pod_ns_uid_0", fn)
			if v != "id-1" || !joined || err != nil {
				t.Errorf("retry got %q joined=%v err=%v", v, joined, err)
			}
		}()
	}
	// Release only once all three have joined (else a late one would start anew).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		n := f.calls["pod_ns_uid_0"].joiners
		f.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d retries joined", n)
		}
	}
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("fn ran %d times", runs.Load())
	}
}
