package kubelet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
)

// unsignedImage is a copy of busybox that nobody signed, in a repository
// the image policy below requires a signature for.
const unsignedImage = "registry.k8s.io/berth-test/unsigned:1"

// writeImagePolicy gives berthd an image policy (docs/image-policy.md) that
// accepts every image but unsignedImage's repository, where it requires a
// signature by a key generated here, and pushes that unsigned image to the
// test registry (the mirror of registry.k8s.io). It returns the config
// lines that turn the policy on.
func writeImagePolicy(t *testing.T, registry string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/etc/berth/policy/signer.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	writeFile(t, "/etc/berth/policy/image-policy.toml", `[default]
type = "accept"

[scopes."registry.k8s.io/berth-test/unsigned"]
type = "sigstore"
keys = ["signer.pub"]
`)
	src := registry + "/e2e-test-images/busybox:1.29-2"
	if err := crane.Copy(src, registry+"/berth-test/unsigned:1", crane.Insecure); err != nil {
		t.Fatalf("copy %s into the test registry: %v", src, err)
	}
	return "[registry]\nimage_policy = \"/etc/berth/policy/image-policy.toml\"\n"
}
