package imagepolicy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
)

// The cost of the policy on the paths kubelet uses, network aside (the
// source is in memory): a check answered by a verdict (every
// CreateContainer and warm pull under an unchanged policy), and a full
// check (cold pull, or the first create after a policy change) for each
// kind of signature.
//
//	go test -run - -bench . ./internal/imagepolicy/
func BenchmarkCheck(b *testing.B) {
	t := testing.TB(b)
	key := sigtest.NewKey(t, "ecdsa")
	tgt := testTarget()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	key.WritePub(t, dir, "k.pub")
	os.WriteFile(filepath.Join(dir, "trusted_root.json"), sigtest.TrustedRootJSON(t, vs), 0o644)
	keyless := `[[default.keyless]]
trusted_root = "trusted_root.json"
issuer = "https://issuer.example"
subject = "ci@example.com"
require_sct = false
`
	for _, bc := range []struct {
		name, policy string
		setup        func(f *fakeSource)
		cached       bool
	}{
		{"verdict", "keys = [\"k.pub\"]\n", func(f *fakeSource) { f.addCosignTag(t, key, tgt.Digest) }, true},
		{"cosign-tag-key", "keys = [\"k.pub\"]\n", func(f *fakeSource) { f.noAPI = true; f.addCosignTag(t, key, tgt.Digest) }, false},
		{"bundle-key", "keys = [\"k.pub\"]\n", func(f *fakeSource) { f.addBundle(t, key, tgt.Digest, testManifest, false) }, false},
		{"bundle-keyless-tlog", keyless, func(f *fakeSource) {
			data, _ := sigtest.KeylessBundle(t, vs, "ci@example.com", "https://issuer.example", testManifest).MarshalJSON()
			f.addRawBundle(data)
		}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := filepath.Join(dir, "policy.toml")
			os.WriteFile(p, []byte(fmt.Sprintf("[default]\ntype = \"sigstore\"\n%s", bc.policy)), 0o644)
			pol, err := Load(p)
			if err != nil {
				b.Fatal(err)
			}
			e := NewEnforcer(discardLog(), nil)
			e.SetPolicy(pol)
			f := newFakeSource()
			bc.setup(f)
			ctx := context.Background()
			if err := e.Check(ctx, tgt, "", f); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !bc.cached {
					e.SetPolicy(pol) // keeps the version, so forget the verdict by hand
					e.mu.Lock()
					clear(e.verdicts)
					e.mu.Unlock()
				}
				if err := e.Check(ctx, tgt, "", f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
