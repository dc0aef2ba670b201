package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/imagepolicy"
	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
	"github.com/berth-cri/berth/internal/metrics"
)

func (r *testRegistry) allBlobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.blobGets {
		n += c
	}
	return n
}

// loadPolicy writes a policy whose default scope asks for key's signature.
func loadPolicy(t *testing.T, key *sigtest.Key) *imagepolicy.Policy {
	t.Helper()
	dir := t.TempDir()
	key.WritePub(t, dir, "k.pub")
	p := filepath.Join(dir, "policy.toml")
	os.WriteFile(p, []byte("[default]\ntype = \"sigstore\"\nkeys = [\"k.pub\"]\n"), 0o644)
	pol, err := imagepolicy.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// The policy is enforced on the verified manifest before any blob of the
// image is fetched or stored, and an image accepted once is checked again
// at CheckPolicy (CreateContainer) without a registry request until the
// policy changes.
func TestPullPolicy(t *testing.T) {
	reg := newTestRegistry(t)
	key := sigtest.NewKey(t, "ecdsa")
	signed, unsigned := randomImage(t, 2), randomImage(t, 2)
	reg.push(t, "signed:1", signed)
	reg.push(t, "unsigned:1", unsigned)
	// This registry has no referrers API: the cosign tag is found after
	// its 404s.
	d := digest.Digest(manifestDigest(t, signed))
	payload := sigtest.Payload(reg.ref("signed"), d)
	sigtest.Registry{Host: reg.host}.PushCosignTag(t, "signed", d, payload, key.Sign(t, payload))

	m := metrics.New()
	enf := imagepolicy.NewEnforcer(discardLog(), m)
	enf.SetPolicy(loadPolicy(t, key))
	e := newTestEnv(t, reg, func(o *Options) { o.Policy = enf })
	checks := func(result string) float64 { return value(t, m, "berth_image_verification_duration_seconds", result) }
	ctx := context.Background()

	img := e.pull(t, reg.ref("signed:1"))
	blobs, snaps := e.blobs(t), e.snapshots(t)
	_, err := e.svc.Pull(ctx, reg.ref("unsigned:1"), nil, "")
	if !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "no signature found") {
		t.Fatalf("unsigned pull: %v", err)
	}
	if n := reg.layerGets(t, unsigned); n != 0 {
		t.Errorf("a refused pull fetched %d layers", n)
	}
	if _, err := e.svc.Get(reg.ref("unsigned:1")); !errors.Is(err, errdefs.ErrNotFound) || e.blobs(t) != blobs || e.snapshots(t) != snaps {
		t.Errorf("a refused pull left a record (%v), blobs or snapshots", err)
	}

	gets := reg.allBlobGets()
	if err := e.svc.CheckPolicy(ctx, img, ""); err != nil {
		t.Fatalf("check of a verified image: %v", err)
	}
	if reg.allBlobGets() != gets {
		t.Errorf("a check under the same policy read the registry")
	}
	if a, r := checks(metrics.VerifyAccepted), checks(metrics.VerifyRejected); a != 1 || r != 1 {
		t.Errorf("verifications observed: %v accepted, %v rejected; want 1 and 1 (a verdict is not a verification)", a, r)
	}
	// Another key: the image on the node is checked again, and refused.
	enf.SetPolicy(loadPolicy(t, sigtest.NewKey(t, "ecdsa")))
	if err := e.svc.CheckPolicy(ctx, img, ""); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("check after the policy changed: %v", err)
	}
}

// An index whose platform manifest alone is signed (cosign sign
// --recursive signs both; some signers sign the platform manifests only)
// is accepted at the pull and at CheckPolicy, also without a verdict.
func TestPullPolicyPlatformSignature(t *testing.T) {
	reg := newTestRegistry(t)
	key := sigtest.NewKey(t, "ecdsa")
	amd, arm := randomImage(t, 1), randomImage(t, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	reg.pushIndex(t, "multi:1", idx)
	d := digest.Digest(manifestDigest(t, amd))
	payload := sigtest.Payload(reg.ref("multi"), d)
	sigtest.Registry{Host: reg.host}.PushCosignTag(t, "multi", d, payload, key.Sign(t, payload))

	pol := loadPolicy(t, key)
	enf := imagepolicy.NewEnforcer(discardLog(), nil)
	enf.SetPolicy(pol)
	e := newTestEnv(t, reg, func(o *Options) { fixedPlatform(o); o.Policy = enf })
	img := e.pull(t, reg.ref("multi:1"))

	fresh := imagepolicy.NewEnforcer(discardLog(), nil) // as after a restart without verdicts
	fresh.SetPolicy(pol)
	e.svc.policy = fresh
	if err := e.svc.CheckPolicy(context.Background(), img, ""); err != nil {
		t.Fatalf("check without a verdict: %v", err)
	}
	gets := reg.allBlobGets()
	if err := e.svc.CheckPolicy(context.Background(), img, ""); err != nil || reg.allBlobGets() != gets {
		t.Fatalf("second check: %v, %d registry reads", err, reg.allBlobGets()-gets)
	}
}
