package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a berth.toml: it must never
// panic, and any error must name the file (the operator has to know which
// one to fix). Seeds are in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "berth.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name %s: %v", path, err)
			}
			return
		}
		// What loads is valid, and validating it again agrees.
		if err := l.validate(); err != nil {
			t.Fatalf("loaded config fails validation: %v", err)
		}
		if l.Config.Runtimes[l.Config.DefaultRuntime].Type == "" {
			t.Fatalf("default runtime %q has no type", l.Config.DefaultRuntime)
		}
	})
}
