package imagepolicy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
)

var testManifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)

func testTarget() Target {
	return Target{Image: "example.com/app:1", Name: "example.com/app", Digest: digest.FromBytes(testManifest), Manifest: testManifest}
}

// keyPolicy loads a policy whose default scope asks for the keys named
// (written from keys), with keys_required req.
func keyPolicy(t *testing.T, req string, keys map[string]*sigtest.Key) *Requirement {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for n, k := range keys {
		k.WritePub(t, dir, n)
		names = append(names, fmt.Sprintf("%q", n))
	}
	body := fmt.Sprintf("[default]\ntype = \"sigstore\"\nkeys = [%s]\nkeys_required = %q\n", strings.Join(names, ", "), req)
	p := filepath.Join(dir, "policy.toml")
	os.WriteFile(p, []byte(body), 0o644)
	pol, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return pol.Decide("example.com/app", "")[0]
}

func legacySig(t *testing.T, k *sigtest.Key, d digest.Digest) Signature {
	payload := sigtest.Payload("example.com/app", d)
	return Signature{Where: "tag", Payload: payload, Sig: k.Sign(t, payload)}
}

func bundleSig(t *testing.T, k *sigtest.Key, manifest []byte) Signature {
	return Signature{Where: "referrer", Entity: k.Bundle(t, manifest)}
}

func TestKeyDecisions(t *testing.T) {
	tgt := testTarget()
	for _, kind := range []string{"ecdsa", "ed25519", "rsa"} {
		a, b, other := sigtest.NewKey(t, kind), sigtest.NewKey(t, kind), sigtest.NewKey(t, "ecdsa")
		for _, tc := range []struct {
			name string
			req  string
			sigs []Signature
			want string // "" accepted, else a part of the refusal
		}{
			{"legacy by a", "any", []Signature{legacySig(t, a, tgt.Digest)}, ""},
			{"bundle by a", "any", []Signature{bundleSig(t, a, testManifest)}, ""},
			{"bundle by b", "any", []Signature{bundleSig(t, b, testManifest)}, ""},
			{"unsigned", "any", nil, "no signature found"},
			{"wrong key legacy", "any", []Signature{legacySig(t, other, tgt.Digest)}, "wrong key: no signature verifies with keys"},
			{"wrong key bundle", "any", []Signature{bundleSig(t, other, testManifest)}, "wrong key"},
			{"legacy of another manifest", "any", []Signature{legacySig(t, a, digest.FromString("x"))}, "payload signs manifest"},
			{"bundle of another manifest", "any", []Signature{bundleSig(t, a, []byte("{}"))}, "wrong key"},
			{"all, one missing", "all", []Signature{bundleSig(t, a, testManifest)}, "missing a valid signature by key"},
			{"all, both", "all", []Signature{bundleSig(t, a, testManifest), legacySig(t, b, tgt.Digest)}, ""},
		} {
			r := keyPolicy(t, tc.req, map[string]*sigtest.Key{"a.pub": a, "b.pub": b})
			err := r.check(tgt, Discovery{Signatures: tc.sigs})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s/%s: refused: %v", kind, tc.name, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s/%s: got %v, want a refusal with %q", kind, tc.name, err, tc.want)
			case err != nil && !errdefsIsPermissionDenied(err):
				t.Errorf("%s/%s: %v does not wrap ErrPermissionDenied", kind, tc.name, err)
			case err != nil && !strings.Contains(err.Error(), "image example.com/app:1 refused by the image policy (default scope)"):
				t.Errorf("%s/%s: %v does not name the image and scope", kind, tc.name, err)
			}
		}
	}
}

func errdefsIsPermissionDenied(err error) bool {
	var d *Denial
	return errors.As(err, &d) && errors.Is(err, errdefs.ErrPermissionDenied)
}

// legacyKeyless is a keyless cosign tag signature of manifest d.
func legacyKeyless(t *testing.T, vs *ca.VirtualSigstore, subject, issuer string, d digest.Digest) Signature {
	l := sigtest.KeylessCosign(t, vs, subject, issuer, sigtest.Payload("example.com/app", d))
	return Signature{Where: "tag", Payload: l.Payload, Sig: l.Sig, Cert: []byte(l.Annotations[annotationCertificate]), RekorBundle: []byte(l.Annotations[annotationRekorBundle])}
}

// forgedSET changes a byte of the Rekor bundle's signed entry timestamp.
func forgedSET(t *testing.T, s Signature) Signature {
	var rb map[string]any
	if err := json.Unmarshal(s.RekorBundle, &rb); err != nil {
		t.Fatal(err)
	}
	set, _ := base64.StdEncoding.DecodeString(rb["SignedEntryTimestamp"].(string))
	set[len(set)/2] ^= 1
	rb["SignedEntryTimestamp"] = set
	s.RekorBundle, _ = json.Marshal(rb)
	return s
}

func noRekor(s Signature) Signature {
	s.RekorBundle = nil
	return s
}

// virtualRoot writes the trusted_root.json of a virtual Sigstore.
func virtualRoot(t *testing.T, vs *ca.VirtualSigstore, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(p, sigtest.TrustedRootJSON(t, vs), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeylessDecisions(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	virtualRoot(t, vs, dir)
	tgt := testTarget()
	const issuer, subject = "https://issuer.example", "ci@example.com"
	good, err := vs.Sign(subject, issuer, testManifest)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := vs.Sign("mallory@example.com", issuer, testManifest)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := vs.Sign(subject, issuer, []byte("another manifest"))
	keyBundle := bundleSig(t, sigtest.NewKey(t, "ecdsa"), testManifest)
	leaf, leafKey, err := vs.GenerateLeafCert(subject, issuer)
	if err != nil {
		t.Fatal(err)
	}
	noTlog := Signature{Where: "r", Entity: sigtest.CertBundle(t, leaf, leafKey, testManifest)}
	for _, tc := range []struct {
		name     string
		identity string
		sigs     []Signature
		want     string
	}{
		{"right identity, tlog required", `subject = "ci@example.com"`, []Signature{{Where: "r", Entity: good}}, ""},
		{"subject regexp", `subject_regexp = "^ci@"`, []Signature{{Where: "r", Entity: good}}, ""},
		{"wrong identity", `subject = "ci@example.com"`, []Signature{{Where: "r", Entity: stranger}}, "certificate identity mismatch: want issuer https://issuer.example, subject ci@example.com, got issuer https://issuer.example, subject mallory@example.com"},
		{"another manifest", `subject = "ci@example.com"`, []Signature{{Where: "r", Entity: other}}, "no signature is certified"},
		{"key-signed bundle", `subject = "ci@example.com"`, []Signature{keyBundle}, "signed with a key, not a certificate"},
		{"unsigned", `subject = "ci@example.com"`, nil, "no signature found"},
		{"cosign bundle: DSSE statement, inclusion proof, timestamp", "subject = \"ci@example.com\"\nrequire_signed_timestamp = true", []Signature{{Where: "r", Entity: sigtest.KeylessBundle(t, vs, subject, issuer, testManifest)}}, ""},
		{"cosign bundle of another manifest", `subject = "ci@example.com"`, []Signature{{Where: "r", Entity: sigtest.KeylessBundle(t, vs, subject, issuer, []byte("x"))}}, "no signature is certified"},
		{"cosign tag keyless, SET", `subject = "ci@example.com"`, []Signature{legacyKeyless(t, vs, subject, issuer, tgt.Digest)}, ""},
		{"cosign tag keyless, wrong identity", `subject = "ci@example.com"`, []Signature{legacyKeyless(t, vs, "mallory@example.com", issuer, tgt.Digest)}, "certificate identity mismatch"},
		{"cosign tag keyless, another manifest", `subject = "ci@example.com"`, []Signature{legacyKeyless(t, vs, subject, issuer, digest.FromString("x"))}, "payload signs manifest"},
		{"cosign tag keyless, forged SET", `subject = "ci@example.com"`, []Signature{forgedSET(t, legacyKeyless(t, vs, subject, issuer, tgt.Digest))}, "transparency log proof missing or invalid"},
		{"cosign tag keyless, no Rekor bundle", `subject = "ci@example.com"`, []Signature{noRekor(legacyKeyless(t, vs, subject, issuer, tgt.Digest))}, "transparency log proof missing"},
		{"cosign tag keyless, no Rekor bundle, tlog not required", "subject = \"ci@example.com\"\nrequire_tlog = false", []Signature{noRekor(legacyKeyless(t, vs, subject, issuer, tgt.Digest))}, ""},
		{"no tlog entry, tlog required", `subject = "ci@example.com"`, []Signature{noTlog}, "transparency log proof missing (require_tlog)"},
		{"no tlog entry, tlog not required", "subject = \"ci@example.com\"\nrequire_tlog = false", []Signature{noTlog}, ""},
		{"no timestamp, signed timestamp required", "subject = \"ci@example.com\"\nrequire_tlog = false\nrequire_signed_timestamp = true", []Signature{noTlog}, "signed timestamp missing"},
		{"signed timestamp required", "subject = \"ci@example.com\"\nrequire_signed_timestamp = true", []Signature{{Where: "r", Entity: good}}, ""},
	} {
		body := fmt.Sprintf("[default]\ntype = \"sigstore\"\n[[default.keyless]]\ntrusted_root = \"trusted_root.json\"\nissuer = %q\n%s\nrequire_sct = false\n", issuer, tc.identity)
		p := filepath.Join(dir, "policy.toml")
		os.WriteFile(p, []byte(body), 0o644)
		pol, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = pol.Decide("example.com/app", "")[0].check(tgt, Discovery{Signatures: tc.sigs})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want a refusal with %q", tc.name, err, tc.want)
		}
	}
}

// The trusted root may be PEM files (Fulcio CA, Rekor keys) instead of a
// trusted_root.json.
func TestKeylessPEMRoot(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fulcio, rekor := sigtest.WritePEMRoot(t, vs, dir)
	tgt := testTarget()
	const issuer, subject = "https://issuer.example", "ci@example.com"
	body := fmt.Sprintf("[default]\ntype = \"sigstore\"\n[[default.keyless]]\nfulcio_ca = %q\nrekor_keys = [%q]\nissuer = %q\nsubject = %q\n", fulcio, rekor[0], issuer, subject)
	p := filepath.Join(dir, "policy.toml")
	os.WriteFile(p, []byte(body), 0o644)
	pol, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	r := pol.Decide("example.com/app", "")[0]
	for name, sig := range map[string]Signature{
		"cosign tag":    legacyKeyless(t, vs, subject, issuer, tgt.Digest),
		"cosign bundle": {Where: "r", Entity: sigtest.KeylessBundle(t, vs, subject, issuer, testManifest)},
	} {
		if err := r.check(tgt, Discovery{Signatures: []Signature{sig}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	other, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.check(tgt, Discovery{Signatures: []Signature{legacyKeyless(t, other, subject, issuer, tgt.Digest)}}); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
}
