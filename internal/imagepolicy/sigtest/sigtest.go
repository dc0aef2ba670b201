// Package sigtest signs test images the way cosign does, with keys the
// test generates: cosign simple-signing signatures (the sha256-<hex>.sig
// tag) and Sigstore bundles (OCI referrers), and pushes them to a test
// registry. Only tests and the benchmark (test/bench) import it.
package sigtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/proto"
)

// Key is a generated signing key.
type Key struct {
	Signer signature.Signer
	// PEM is the public key as a cosign .pub file holds it.
	PEM []byte
}

// NewKey generates a key of kind "ecdsa" (P-256), "ed25519" or "rsa".
func NewKey(t testing.TB, kind string) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Signer: s, PEM: pem}
}

// WritePub writes the public key to dir/name and returns the path.
func (k *Key) WritePub(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, k.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Payload is the simple-signing payload cosign signs for image name at
// manifest d.
func Payload(name string, d digest.Digest) []byte {
	b, _ := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": name},
			"image":    map[string]string{"docker-manifest-digest": d.String()},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	return b
}

// Sign signs msg.
func (k *Key) Sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	sig, err := k.Signer.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Bundle is a Sigstore bundle v0.3 whose message signature by k signs the
// manifest bytes.
func (k *Key) Bundle(t testing.TB, manifest []byte) *bundle.Bundle {
	t.Helper()
	sum := sha256.Sum256(manifest)
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "test"}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     k.Sign(t, manifest),
		}},
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CertBundle is a Sigstore bundle v0.3 whose message signature signs the
// manifest with the key of cert (a keyless signature), without
// transparency log entry or timestamp.
func CertBundle(t testing.TB, cert *x509.Certificate, priv crypto.PrivateKey, manifest []byte) *bundle.Bundle {
	t.Helper()
	s, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignMessage(bytes.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(manifest)
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert.Raw}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     sig,
		}},
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Registry pushes signatures to a test registry (plain HTTP).
type Registry struct{ Host string }

func (r Registry) repo(t testing.TB, repo string) name.Repository {
	t.Helper()
	n, err := name.NewRepository(r.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type rawManifest struct {
	data []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// putManifest pushes the blobs and the manifest made of them as repo:tag
// (tag "" pushes by digest) and returns its descriptor.
func (r Registry) putManifest(t testing.TB, repo, tag string, m ocispec.Manifest, blobs map[digest.Digest][]byte) ocispec.Descriptor {
	t.Helper()
	rp := r.repo(t, repo)
	for _, b := range blobs {
		if err := remote.WriteLayer(rp, static.NewLayer(b, types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	m.Versioned.SchemaVersion = 2
	m.MediaType = ocispec.MediaTypeImageManifest
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	ref := name.Reference(rp.Digest(d.String()))
	if tag != "" {
		ref = rp.Tag(tag)
	}
	if err := remote.Put(ref, rawManifest{data, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(data))}
}

var emptyConfig = []byte("{}")

func descOf(mt string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// CosignLayer is one signature of a cosign sha256-<hex>.sig tag: the
// simple-signing payload, its signature and any other annotations (a
// keyless signature's certificate and Rekor bundle).
type CosignLayer struct {
	Payload, Sig []byte
	Annotations  map[string]string
}

// PushCosignTag pushes the cosign sha256-<hex>.sig tag for manifest d of
// repo, signed by sigs (each over payload).
func (r Registry) PushCosignTag(t testing.TB, repo string, d digest.Digest, payload []byte, sigs ...[]byte) {
	t.Helper()
	var ls []CosignLayer
	for _, s := range sigs {
		ls = append(ls, CosignLayer{Payload: payload, Sig: s})
	}
	r.PushCosignLayers(t, repo, d, ls...)
}

// PushCosignLayers pushes the cosign sha256-<hex>.sig tag for manifest d
// of repo: one simple-signing layer per signature.
func (r Registry) PushCosignLayers(t testing.TB, repo string, d digest.Digest, layers ...CosignLayer) {
	t.Helper()
	m := ocispec.Manifest{Config: descOf("application/vnd.oci.image.config.v1+json", emptyConfig)}
	blobs := map[digest.Digest][]byte{m.Config.Digest: emptyConfig}
	for _, cl := range layers {
		l := descOf("application/vnd.dev.cosign.simplesigning.v1+json", cl.Payload)
		blobs[l.Digest] = cl.Payload
		l.Annotations = map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(cl.Sig)}
		for k, v := range cl.Annotations {
			l.Annotations[k] = v
		}
		m.Layers = append(m.Layers, l)
	}
	r.putManifest(t, repo, fmt.Sprintf("%s-%s.sig", d.Algorithm(), d.Encoded()), m, blobs)
}

// KeylessCosign signs payload as cosign's keyless tag scheme does: a
// certificate of the virtual Fulcio for subject and issuer, and a Rekor
// hashedrekord entry with its signed entry timestamp, in the certificate
// and bundle annotations.
func KeylessCosign(t testing.TB, vs *ca.VirtualSigstore, subject, issuer string, payload []byte) CosignLayer {
	t.Helper()
	e, err := vs.SignAtTime(subject, issuer, payload, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	tle := entries[0].TransparencyLogEntry()
	// The virtual log keeps some key ids as hex text (see rawLogIDs).
	logID := hex.EncodeToString(tle.LogId.KeyId)
	if _, err := hex.DecodeString(string(tle.LogId.KeyId)); err == nil && len(tle.LogId.KeyId) == 64 {
		logID = string(tle.LogId.KeyId)
	}
	body := base64.StdEncoding.EncodeToString(tle.CanonicalizedBody)
	set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: body, IntegratedTime: tle.IntegratedTime, LogIndex: tle.LogIndex, LogID: logID})
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(map[string]any{
		"SignedEntryTimestamp": set,
		"Payload":              map[string]any{"body": body, "integratedTime": tle.IntegratedTime, "logIndex": tle.LogIndex, "logID": logID},
	})
	certPEM, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	return CosignLayer{Payload: payload, Sig: sc.MessageSignatureContent().Signature(), Annotations: map[string]string{
		"dev.sigstore.cosign/certificate": string(certPEM),
		"dev.sigstore.cosign/bundle":      string(rb),
	}}
}

// PushBundle attaches b to subject (a manifest of repo) as an OCI 1.1
// referrer of artifact type application/vnd.dev.sigstore.bundle.v0.3+json,
// as current cosign does.
func (r Registry) PushBundle(t testing.TB, repo string, subject ocispec.Descriptor, b *bundle.Bundle) {
	t.Helper()
	data, err := b.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	const mt = "application/vnd.dev.sigstore.bundle.v0.3+json"
	empty := descOf("application/vnd.oci.empty.v1+json", emptyConfig)
	m := ocispec.Manifest{ArtifactType: mt, Config: empty, Layers: []ocispec.Descriptor{descOf(mt, data)}, Subject: &subject}
	r.putManifest(t, repo, "", m, map[digest.Digest][]byte{empty.Digest: emptyConfig, digest.FromBytes(data): data})
}

// WritePEMRoot writes the virtual Sigstore's Fulcio CA (root and
// intermediates) and Rekor keys as PEM files in dir: fulcio.pem and
// rekor-<n>.pub.
func WritePEMRoot(t testing.TB, vs *ca.VirtualSigstore, dir string) (fulcio string, rekor []string) {
	t.Helper()
	var pem []byte
	for _, a := range vs.FulcioCertificateAuthorities() {
		fca := a.(*root.FulcioCertificateAuthority)
		for _, c := range append(fca.Intermediates, fca.Root) {
			b, err := cryptoutils.MarshalCertificateToPEM(c)
			if err != nil {
				t.Fatal(err)
			}
			pem = append(pem, b...)
		}
	}
	fulcio = filepath.Join(dir, "fulcio.pem")
	if err := os.WriteFile(fulcio, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, l := range vs.RekorLogs() {
		b, err := cryptoutils.MarshalPublicKeyToPEM(l.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("rekor-%d.pub", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rekor = append(rekor, p)
		i++
	}
	return fulcio, rekor
}

// TrustedRootJSON is the trusted_root.json of a virtual Sigstore: its
// Fulcio CA, Rekor and CT log keys and timestamping authority.
func TrustedRootJSON(t testing.TB, vs *ca.VirtualSigstore) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), rawLogIDs(t, vs.CTLogs()), vs.TimestampingAuthorities(), rawLogIDs(t, vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// rawLogIDs works around a quirk of the virtual Sigstore: its logs' ID
// fields hold the hex text of the key id, which a trusted_root.json
// carries as bytes, so the ids read back from the file would not match.
func rawLogIDs(t testing.TB, logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
	out := map[string]*root.TransparencyLog{}
	for id, l := range logs {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		c := *l
		c.ID = raw
		out[id] = &c
	}
	return out
}

// KeylessBundle is what current cosign attaches for a keyless signature:
// a Sigstore bundle v0.3 holding a DSSE envelope whose in-toto statement
// names the manifest's digest, signed with a certificate of the virtual
// Fulcio for subject and issuer, with a Rekor entry (inclusion proof) and
// an RFC 3161 timestamp.
func KeylessBundle(t testing.TB, vs *ca.VirtualSigstore, subject, issuer string, manifest []byte) *bundle.Bundle {
	t.Helper()
	sum := sha256.Sum256(manifest)
	stmt, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "image", "digest": map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		"predicateType": "https://sigstore.dev/cosign/sign/v1",
		"predicate":     map[string]any{},
	})
	e, err := vs.AttestAtTime(subject, issuer, stmt, time.Now().Add(time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	env := sc.EnvelopeContent().RawEnvelope()
	entries, _ := e.TlogEntries()
	tss, _ := e.Timestamps()
	mat := &protobundle.VerificationMaterial{
		Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		TimestampVerificationData: &protobundle.TimestampVerificationData{},
	}
	for _, en := range entries {
		// The virtual log's entries leave out the kind and version the
		// bundle format needs: they are in the entry's body.
		tle := proto.Clone(en.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
		// and keeps some key ids as hex text (see rawLogIDs): a real log
		// id is the raw SHA-256 of the log's key.
		if raw, err := hex.DecodeString(string(tle.LogId.KeyId)); err == nil && len(raw) == 32 {
			tle.LogId.KeyId = raw
		}
		var kv struct{ Kind, APIVersion string }
		json.Unmarshal(tle.CanonicalizedBody, &kv)
		tle.KindVersion = &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}
		// Rekor v1 gives a signed entry timestamp besides the proof, as
		// cosign's bundles carry: it makes the integrated time trusted.
		set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
			IntegratedTime: tle.IntegratedTime, LogIndex: tle.LogIndex, LogID: hex.EncodeToString(tle.LogId.KeyId)})
		if err != nil {
			t.Fatal(err)
		}
		tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
		mat.TlogEntries = append(mat.TlogEntries, tle)
	}
	for _, ts := range tss {
		mat.TimestampVerificationData.Rfc3161Timestamps = append(mat.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	penv := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, s := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			t.Fatal(err)
		}
		penv.Signatures = append(penv.Signatures, &protodsse.Signature{Sig: raw, Keyid: s.KeyID})
	}
	b, err := bundle.NewBundle(&protobundle.Bundle{
		MediaType:            "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: mat,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: penv},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
