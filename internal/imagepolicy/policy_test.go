package imagepolicy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
)

// writePolicy writes a policy file (and a key a.pub its scopes may name)
// in a temp dir.
func writePolicy(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	sigtest.NewKey(t, "ecdsa").WritePub(t, dir, "a.pub")
	p := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScopeMatching(t *testing.T) {
	pol, err := Load(writePolicy(t, `
[default]
type = "reject"
[scopes."docker.io"]
type = "accept"
[scopes."docker.io/library/busybox"]
type = "sigstore"
keys = ["a.pub"]
[scopes."registry.example.com:5000/team"]
type = "accept"
[scopes."*.example.com/team"]
type = "sigstore"
keys = ["a.pub"]
[scopes."ghcr.io/*/app"]
type = "accept"
[scopes."ghcr.io/org/app"]
type = "reject"
[namespaces.prod.scopes."docker.io/library"]
type = "sigstore"
keys = ["a.pub"]
[namespaces.strict.default]
type = "reject"
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ns string
		want     []string // the scopes decided, node's first
	}{
		{"docker.io/library/busybox", "", []string{"docker.io/library/busybox"}},
		{"docker.io/library/busyboxes", "", []string{"docker.io"}}, // prefixes stop at "/"
		{"docker.io/library/busybox/sub", "", []string{"docker.io/library/busybox"}},
		{"quay.io/x/y", "", []string{""}},
		{"registry.example.com:5000/team/app", "", []string{"registry.example.com:5000/team"}},
		{"other.example.com/team/app", "", []string{"*.example.com/team"}},
		{"example.com/team/app", "", []string{""}}, // *. needs a subdomain
		{"ghcr.io/someone/app", "", []string{"ghcr.io/*/app"}},
		{"ghcr.io/org/app", "", []string{"ghcr.io/org/app"}}, // a literal beats a glob of as many components
		{"ghcr.io/org/app/x", "", []string{"ghcr.io/org/app"}},
		{"docker.io/library/nginx", "prod", []string{"docker.io", "docker.io/library"}},
		{"quay.io/x", "prod", []string{""}}, // prod has no default: the node policy alone
		{"docker.io/library/nginx", "strict", []string{"docker.io", ""}},
		{"docker.io/library/nginx", "other", []string{"docker.io"}},
	} {
		var got []string
		for _, r := range pol.Decide(tc.name, tc.ns) {
			got = append(got, r.Scope)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("Decide(%q, %q) = %q, want %q", tc.name, tc.ns, got, tc.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`[scopes."a"]` + "\ntype = \"accept\"\n", "[default] scope is required"},
		{"[default]\ntype = \"maybe\"\n", `type "maybe" is not accept`},
		{"[default]\ntype = \"sigstore\"\n", "needs keys, keyless"},
		{"[default]\ntype = \"sigstore\"\nkeys = [\"missing.pub\"]\n", "missing.pub"},
		{"[default]\ntype = \"sigstore\"\nkeys = [\"a.pub\"]\nkeys_required = \"most\"\n", "keys_required"},
		{"[default]\ntype = \"accept\"\nkeys = [\"a.pub\"]\n", "takes no keys"},
		{"[default]\ntype = \"accept\"\n[scopes.\"docker.io/x:1\"]\ntype = \"accept\"\n", "not tags or digests"},
		{"[default]\ntype = \"accept\"\n[scopes.\"docker.io/[\"]\ntype = \"accept\"\n", "bad glob"},
		{"[default]\ntype = \"accept\"\ncolour = 1\n", `unknown key "default.colour"`},
		{"version = 2\n[default]\ntype = \"accept\"\n", "version 2"},
		{"[default]\ntype = \"sigstore\"\n[[default.keyless]]\nissuer = \"i\"\nsubject = \"s\"\n", "trusted_root"},
		{"[default]\ntype = \"sigstore\"\n[[default.keyless]]\ntrusted_root = \"r.json\"\nsubject = \"s\"\n", "issuer"},
		{"[default]\ntype = \"sigstore\"\n[[default.keyless]]\ntrusted_root = \"r.json\"\nrekor_keys = [\"a.pub\"]\nissuer = \"i\"\nsubject = \"s\"\n", "go with fulcio_ca"},
		{"[default]\ntype = \"sigstore\"\n[[default.keyless]]\nfulcio_ca = \"a.pub\"\nissuer = \"i\"\nsubject = \"s\"\n", "no PEM certificate"},
	} {
		_, err := Load(writePolicy(t, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error with %q", tc.body, err, tc.want)
		}
	}
}

// TestVersion pins that the version follows the content of the policy and
// of the keys it names, not the file's path or time.
func TestVersion(t *testing.T) {
	p := writePolicy(t, "[default]\ntype = \"sigstore\"\nkeys = [\"a.pub\"]\n")
	a, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Load(p)
	if a.Version != b.Version {
		t.Fatalf("same content, versions %s and %s", a.Version, b.Version)
	}
	sigtest.NewKey(t, "ecdsa").WritePub(t, filepath.Dir(p), "a.pub")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version == a.Version {
		t.Fatal("a new key file left the version unchanged")
	}
}
