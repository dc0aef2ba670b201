package imagepolicy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// mediaTypeBundle01 is the bundle version sigstore-go reads that takes a
// Rekor entry with its signed entry timestamp alone (what the cosign tag
// scheme keeps); a signature without Rekor entry is put in a MediaTypeBundle
// (v0.3) bundle.
const mediaTypeBundle01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"

// rekorBundle is the dev.sigstore.cosign/bundle annotation: the Rekor
// entry of a cosign tag signature and its signed entry timestamp.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// legacyBundle turns a keyless cosign tag signature (certificate, chain
// and Rekor bundle annotations) into the Sigstore bundle it amounts to, so
// that sigstore-go verifies it like any other: the message signed is the
// simple-signing payload. Nothing is verified here.
func legacyBundle(s Signature) (*bundle.Bundle, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(s.Cert)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("certificate annotation is not a PEM certificate")
	}
	chain := &protocommon.X509CertificateChain{Certificates: []*protocommon.X509Certificate{{RawBytes: certs[0].Raw}}}
	if len(s.Chain) > 0 {
		more, err := cryptoutils.UnmarshalCertificatesFromPEM(s.Chain)
		if err != nil {
			return nil, fmt.Errorf("chain annotation is not PEM certificates")
		}
		for _, c := range more {
			chain.Certificates = append(chain.Certificates, &protocommon.X509Certificate{RawBytes: c.Raw})
		}
	}
	sum := sha256.Sum256(s.Payload)
	pb := &protobundle.Bundle{
		MediaType: MediaTypeBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: chain.Certificates[0]},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     s.Sig,
		}},
	}
	if len(s.RekorBundle) > 0 {
		tle, err := legacyTlogEntry(s.RekorBundle)
		if err != nil {
			return nil, err
		}
		pb.MediaType = mediaTypeBundle01
		pb.VerificationMaterial.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: chain}
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{tle}
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("cosign tag signature: %w", err)
	}
	return b, nil
}

func legacyTlogEntry(annotation []byte) (*protorekor.TransparencyLogEntry, error) {
	var rb rekorBundle
	if err := json.Unmarshal(annotation, &rb); err != nil {
		return nil, fmt.Errorf("Rekor bundle annotation: %v", err)
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, errors.New("Rekor bundle annotation: body is not base64")
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, errors.New("Rekor bundle annotation: logID is not hex")
	}
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil {
		return nil, errors.New("Rekor bundle annotation: body is not a Rekor entry")
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          rb.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
		IntegratedTime:    rb.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: rb.SignedEntryTimestamp},
		CanonicalizedBody: body,
	}, nil
}
