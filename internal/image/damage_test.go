package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// A content blob truncated or missing when berthd starts: the service
// starts, logs the damage, drops what cannot be used (a record whose
// config is gone, and then its snapshots), and a re-pull fetches the blob
// again (regression: a truncated config blob was read back as the config,
// so every re-pull of the image failed with a JSON error).
func TestRestartWithDamagedBlob(t *testing.T) {
	for _, tc := range []struct {
		name       string
		config     bool // damage the config, else the manifest
		truncate   bool // else delete
		recordKept bool
	}{
		{"config truncated", true, true, false},
		{"config missing", true, false, false},
		{"manifest truncated", false, true, true},
		{"manifest missing", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testsupport.NoGoroutineLeaks(t)
			f := newFakeRegistry(t)
			f.image(t, "app", "v1", fakeImage{layers: [][]byte{smallTar(t, "a")}})
			ref := f.ref("app:v1")
			logger, hook := test.NewNullLogger()
			e := newTestEnv(t, nil, func(o *Options) { fixedPlatform(o); o.Log = logger })
			img := e.pull(t, ref)
			target := img.ID // the config
			if !tc.config {
				target = digest.Digest(strings.TrimPrefix(img.RepoDigests[0], f.ref("app@")))
			}
			p := filepath.Join(e.root, "content", "blobs", "sha256", target.Encoded())
			var err error
			if tc.truncate {
				err = os.Truncate(p, 7)
			} else {
				err = os.Remove(p)
			}
			if err != nil {
				t.Fatal(err)
			}

			e.reopen(t) // must not fail
			if tc.truncate && !logged(hook, "damaged blob") {
				t.Errorf("damage not logged: %v", hook.AllEntries())
			}
			_, err = e.svc.Get(ref)
			if tc.recordKept != (err == nil) {
				t.Fatalf("record kept = %v, want %v", err == nil, tc.recordKept)
			}
			if !tc.recordKept {
				if !errors.Is(err, errdefs.ErrNotFound) || !logged(hook, "dropping image record") {
					t.Fatalf("Get = %v; log %v", err, hook.AllEntries())
				}
				if s := e.snapshots(t); s != 0 {
					t.Errorf("%d snapshots of the dropped record left", s)
				}
			}
			if e.svc.content.Exists(target) {
				t.Fatal("damaged blob still in the store")
			}

			again := e.pull(t, ref)
			if again.ID != img.ID {
				t.Fatalf("re-pull id %s, want %s", again.ID, img.ID)
			}
			if err := e.svc.content.Verify(target); err != nil {
				t.Fatalf("blob not fetched again: %v", err)
			}
		})
	}
}

func logged(h *test.Hook, s string) bool {
	for _, e := range h.AllEntries() {
		if e.Level <= logrus.WarnLevel && strings.Contains(e.Message, s) {
			return true
		}
	}
	return false
}
