package imagepolicy

import (
	"bytes"
	"crypto"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Target is the image whose signatures are checked.
type Target struct {
	// Image names it in messages (what was asked: a tag or digest).
	Image string
	// Name is the normalised repository ("docker.io/library/busybox"),
	// the name scopes are matched against.
	Name string
	// Digest and Manifest are the manifest the signatures must sign,
	// already verified against each other. When Manifest is nil,
	// ReadManifest reads it, only if signatures are to be checked.
	Digest       digest.Digest
	Manifest     []byte
	ReadManifest func() ([]byte, error)
	// Platform, for an index, returns the platform manifest the image was
	// unpacked from: a signature of it is accepted too (cosign sign
	// --recursive signs both), when the index's own is missing or wrong.
	// Called only then.
	Platform func() (Target, bool)
}

// Denial is a refusal by the policy. It wraps errdefs.ErrPermissionDenied.
type Denial struct {
	Image  string
	Scope  string // Requirement.Describe()
	Reason string
}

func (d *Denial) Error() string {
	return fmt.Sprintf("image %s refused by the image policy (%s): %s", d.Image, d.Scope, d.Reason)
}

func (d *Denial) Unwrap() error { return errdefs.ErrPermissionDenied }

// check verifies that sigs satisfy r for t; the error is a *Denial.
func (r *Requirement) check(t Target, found Discovery) error {
	deny := func(format string, args ...any) error {
		return &Denial{Image: t.Image, Scope: r.Describe(), Reason: fmt.Sprintf(format, args...)}
	}
	switch r.Type {
	case TypeAccept:
		return nil
	case TypeReject:
		return deny("images in this scope are rejected")
	}
	if len(found.Signatures) == 0 {
		msg := fmt.Sprintf("no signature found (looked for Sigstore bundles attached to %s as OCI referrers and for the cosign tag %s-%s.sig)",
			t.Digest, t.Digest.Algorithm(), t.Digest.Encoded())
		if len(found.Problems) > 0 {
			msg += "; " + strings.Join(found.Problems, "; ")
		}
		return deny("%s", msg)
	}
	if len(r.Keys) > 0 {
		if reason := r.checkKeys(t, found.Signatures); reason != "" {
			return deny("%s", reason)
		}
	}
	if len(r.Keyless) > 0 {
		if reason := checkKeyless(r.Keyless, t, found.Signatures); reason != "" {
			return deny("%s", reason)
		}
	}
	return nil
}

// checkKeys returns why the key requirement fails, or "".
func (r *Requirement) checkKeys(t Target, sigs []Signature) string {
	var missing, why []string
	for _, k := range r.Keys {
		var errs []string
		ok := false
		for _, s := range sigs {
			err := verifyWithKey(k, s, t)
			if err == nil {
				ok = true
				break
			}
			errs = append(errs, fmt.Sprintf("%s: %v", s.Where, err))
		}
		if ok {
			if !r.AllKeys {
				return ""
			}
			continue
		}
		missing = append(missing, k.File)
		why = append(why, errs...)
	}
	if len(missing) == 0 {
		return ""
	}
	what := "wrong key: no signature verifies with key"
	if r.AllKeys {
		what = "missing a valid signature by key"
	}
	if len(missing) > 1 {
		what += "s"
	}
	return fmt.Sprintf("%s %s (%d signature(s) checked: %s)", what, strings.Join(missing, ", "), len(sigs), strings.Join(dedupe(why), "; "))
}

// verifyWithKey checks one signature against one public key.
func verifyWithKey(k PublicKey, s Signature, t Target) error {
	v, err := signature.LoadVerifier(k.Key, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("key %s: %w", k.File, err)
	}
	if s.Entity == nil {
		if err := v.VerifySignature(bytes.NewReader(s.Sig), bytes.NewReader(s.Payload)); err != nil {
			return fmt.Errorf("signature does not verify")
		}
		return checkPayload(s.Payload, t.Digest)
	}
	vc, err := s.Entity.VerificationContent()
	if err != nil {
		return err
	}
	if vc.Certificate() != nil {
		return fmt.Errorf("signed with a certificate, not a key")
	}
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	sv, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	if _, err := sv.Verify(s.Entity, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(t.Manifest)), verify.WithKey())); err != nil {
		return shorten(err)
	}
	return nil
}

// checkKeyless returns why no signature is certified for any of ids, or "".
// The reason told is the most telling one: an identity mismatch or a
// missing transparency log proof says more than a bad signature.
func checkKeyless(ids []Keyless, t Target, sigs []Signature) string {
	var reasons []string
	for _, id := range ids {
		for _, s := range sigs {
			err := verifyKeyless(id, s, t)
			if err == nil {
				return ""
			}
			reasons = append(reasons, fmt.Sprintf("%s: %v", s.Where, err))
		}
	}
	return "no signature is certified for an accepted identity: " + strings.Join(dedupe(reasons), "; ")
}

func (id Keyless) describe() string {
	iss, sub := id.Issuer, id.Subject
	if iss == "" {
		iss = "~" + id.IssuerRegexp
	}
	if sub == "" {
		sub = "~" + id.SubjectRegexp
	}
	return fmt.Sprintf("issuer %s, subject %s", iss, sub)
}

func verifyKeyless(id Keyless, s Signature, t Target) error {
	entity, artifact := s.Entity, t.Manifest
	if entity == nil {
		// A cosign tag signature: its certificate and Rekor entry make a
		// bundle whose message is the simple-signing payload.
		if len(s.Cert) == 0 {
			return fmt.Errorf("signed with a key, not a certificate")
		}
		var err error
		if entity, err = legacyBundle(s); err != nil {
			return err
		}
		if err := checkPayload(s.Payload, t.Digest); err != nil {
			return err
		}
		artifact = s.Payload
	}
	vc, err := entity.VerificationContent()
	if err != nil {
		return err
	}
	leaf := vc.Certificate()
	if leaf == nil {
		return fmt.Errorf("signed with a key, not a certificate")
	}
	if id.RequireTlog {
		if entries, err := entity.TlogEntries(); err != nil || len(entries) == 0 {
			return fmt.Errorf("transparency log proof missing (require_tlog)")
		}
	}
	if id.RequireSignedTimestamp {
		if ts, err := entity.Timestamps(); err != nil || len(ts) == 0 {
			return fmt.Errorf("signed timestamp missing (require_signed_timestamp)")
		}
	}
	want, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegexp, id.Subject, id.SubjectRegexp)
	if err != nil {
		return err
	}
	// The identity is compared first, so a mismatch is reported as such
	// rather than as whatever else fails.
	sum, err := certificate.SummarizeCertificate(leaf)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	if err := want.Verify(sum); err != nil {
		return fmt.Errorf("certificate identity mismatch: want %s, got issuer %s, subject %s", id.describe(), sum.Issuer, sum.SubjectAlternativeName)
	}
	var opts []verify.VerifierOption
	if id.RequireTlog {
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	}
	if id.RequireSignedTimestamp {
		opts = append(opts, verify.WithSignedTimestamps(1))
	}
	if !id.RequireTlog && !id.RequireSignedTimestamp {
		// No observer says when it was signed: the certificate must be
		// valid now (long-lived certificates of a private CA).
		opts = append(opts, verify.WithCurrentTime())
	}
	if id.RequireSCT {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	sv, err := verify.NewVerifier(id.TrustedRoot, opts...)
	if err != nil {
		return err
	}
	if _, err := sv.Verify(entity, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithCertificateIdentity(want))); err != nil {
		msg := shorten(err).Error()
		if strings.Contains(msg, "log") && strings.Contains(msg, "threshold") || strings.Contains(msg, "inclusion") {
			return fmt.Errorf("transparency log proof missing or invalid: %s", msg)
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// shorten drops sigstore-go's repeated "verification error:" wrapping.
func shorten(err error) error {
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "verification error: ", ""))
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
