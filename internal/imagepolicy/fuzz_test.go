package imagepolicy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary policy files to Load and matches a few names
// against what loads: no panic, and every name gets a decision.
//
//	go test -run - -fuzz FuzzLoad ./internal/imagepolicy/
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"[default]\ntype = \"accept\"\n",
		"[default]\ntype = \"reject\"\n[scopes.\"docker.io/library\"]\ntype = \"accept\"\n[scopes.\"*.example.com/*\"]\ntype = \"reject\"\n",
		"[default]\ntype = \"accept\"\n[namespaces.prod.default]\ntype = \"reject\"\n[namespaces.prod.scopes.\"a/b\"]\ntype = \"accept\"\n",
		"[default]\ntype = \"sigstore\"\nkeys = [\"k.pub\"]\n",
		"[default]\ntype = \"accept\"\n[scopes.\"[\"]\ntype = \"accept\"\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	p := filepath.Join(dir, "policy.toml")
	f.Fuzz(func(t *testing.T, body string) {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		pol, err := Load(p)
		if err != nil {
			return
		}
		for _, name := range []string{"docker.io/library/busybox", "a/b", "x.example.com/team/app", ""} {
			for _, ns := range []string{"", "prod"} {
				reqs := pol.Decide(name, ns)
				if len(reqs) == 0 || reqs[0] == nil {
					t.Fatalf("no decision for %q in %q", name, ns)
				}
			}
		}
	})
}
