package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/imagepolicy/sigtest"
	"github.com/berth-cri/berth/test/internal/harness"
)

// manifestOf is the descriptor and bytes of the manifest repoTag names in
// the registry.
func manifestOf(t *testing.T, reg *harness.Registry, repoTag string) (ocispec.Descriptor, []byte) {
	t.Helper()
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: string(desc.MediaType), Digest: digest.Digest(desc.Digest.String()), Size: desc.Size}, desc.Manifest
}

// TestImagePolicy signs images in the test (keys generated here, cosign's
// two storage schemes) and checks that berthd pulls only what its image
// policy allows, with a precise refusal otherwise, through a mirror too,
// per namespace, and that a policy changed by SIGHUP is enforced at
// CreateContainer on an image already present.
func TestImagePolicy(t *testing.T) {
	d, reg, _ := newPodDaemon(t, "")
	sr := sigtest.Registry{Host: reg.Host}
	good, wrong := sigtest.NewKey(t, "ecdsa"), sigtest.NewKey(t, "ed25519")
	keys := t.TempDir()
	good.WritePub(t, keys, "good.pub")
	wrong.WritePub(t, keys, "wrong.pub")

	// Images and their signatures: by the cosign tag, by a bundle attached
	// as a referrer, none, by the wrong key, and a valid signature of
	// another manifest copied to the tag of a tampered one.
	for _, repo := range []string{"signed/legacy", "signed/bundle", "unsigned/app", "wrong/app", "tampered/app"} {
		reg.Push(t, repo, "1", 1)
	}
	legacy, _ := manifestOf(t, reg, "signed/legacy:1")
	payload := sigtest.Payload(reg.Host+"/signed/legacy", legacy.Digest)
	legacySig := good.Sign(t, payload)
	sr.PushCosignTag(t, "signed/legacy", legacy.Digest, payload, legacySig)
	bundled, bundledManifest := manifestOf(t, reg, "signed/bundle:1")
	sr.PushBundle(t, "signed/bundle", bundled, good.Bundle(t, bundledManifest))
	wrongDesc, wrongManifest := manifestOf(t, reg, "wrong/app:1")
	sr.PushBundle(t, "wrong/app", wrongDesc, wrong.Bundle(t, wrongManifest))
	tampered, _ := manifestOf(t, reg, "tampered/app:1")
	sr.PushCosignTag(t, "tampered/app", tampered.Digest, payload, legacySig)
	busybox, busyboxManifest := manifestOf(t, reg, harness.BusyboxRepo)
	sr.PushBundle(t, "test/busybox", busybox, good.Bundle(t, busyboxManifest))

	// Keyless: certificates of a test Fulcio (sigstore-go's virtual
	// Sigstore, whose trusted_root.json the policy names), Rekor entries
	// with inclusion proofs, timestamps.
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "trusted_root.json"), sigtest.TrustedRootJSON(t, vs), 0o644); err != nil {
		t.Fatal(err)
	}
	for id, subject := range map[string]string{"good": "ci@example.com", "stranger": "mallory@example.com"} {
		reg.Push(t, "keyless/"+id, "1", 1)
		desc, m := manifestOf(t, reg, "keyless/"+id+":1")
		sr.PushBundle(t, "keyless/"+id, desc, sigtest.KeylessBundle(t, vs, subject, "https://issuer.example", m))
	}

	// Keyless by the older cosign tag: certificate and Rekor bundle
	// (signed entry timestamp) annotations.
	reg.Push(t, "keyless/tag", "1", 1)
	tagged, _ := manifestOf(t, reg, "keyless/tag:1")
	sr.PushCosignLayers(t, "keyless/tag", tagged.Digest,
		sigtest.KeylessCosign(t, vs, "ci@example.com", "https://issuer.example", sigtest.Payload(reg.Host+"/keyless/tag", tagged.Digest)))

	reg.Mirror(t, d, "mirror.example.test")
	policyPath := filepath.Join(keys, "policy.toml")
	writePolicy := func(busyboxKey string) {
		t.Helper()
		body := fmt.Sprintf(`
[default]
type = "accept"
[scopes.%[1]q]
type = "sigstore"
keys = ["good.pub"]
[scopes."%[2]s/test/busybox"]
type = "sigstore"
keys = [%[3]q]
[scopes."mirror.example.test"]
type = "sigstore"
keys = ["good.pub"]
[namespaces.strict.scopes."%[2]s/signed/legacy"]
type = "sigstore"
keys = ["wrong.pub"]
`, reg.Host+"/*/app", reg.Host, busyboxKey)
		body += fmt.Sprintf("[scopes.\"%s/signed\"]\ntype = \"sigstore\"\nkeys = [\"good.pub\"]\n", reg.Host)
		body += fmt.Sprintf(`[scopes."%s/keyless"]
type = "sigstore"
[[scopes."%s/keyless".keyless]]
trusted_root = "trusted_root.json"
issuer = "https://issuer.example"
subject = "ci@example.com"
require_tlog = true
require_sct = false
`, reg.Host, reg.Host)
		if err := os.WriteFile(policyPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("good.pub")
	os.MkdirAll(filepath.Join(d.Dir, "berth.d"), 0o755)
	if err := os.WriteFile(filepath.Join(d.Dir, "berth.d", "50-policy.toml"), []byte(fmt.Sprintf("[registry]\nimage_policy = %q\n", policyPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Start()
	d.WaitReady()
	ic, rt := d.ImageClient(), d.RuntimeClient()
	ctx := context.Background()

	pull := func(image, ns string) error {
		var sb *runtimeapi.PodSandboxConfig
		if ns != "" {
			sb = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: "u"}}
		}
		_, err := ic.PullImage(ctx, &runtimeapi.ImageSpec{Image: image}, nil, sb)
		return err
	}
	for _, tc := range []struct {
		image, ns string
		want      string // "" pulls; else the refusal holds this
	}{
		{reg.Host + "/signed/legacy:1", "", ""},
		{reg.Host + "/signed/bundle:1", "", ""},
		{"mirror.example.test/signed/bundle:1", "", ""}, // signature through the mirror
		{reg.Host + "/unsigned/app:1", "", fmt.Sprintf(`refused by the image policy (scope "%s/*/app"): no signature found`, reg.Host)},
		{"mirror.example.test/unsigned/app:1", "", `(scope "mirror.example.test"): no signature found`},
		{reg.Host + "/wrong/app:1", "", "wrong key: no signature verifies with key " + filepath.Join(keys, "good.pub")},
		{reg.Host + "/tampered/app:1", "", "payload signs manifest " + legacy.Digest.String() + ", not " + tampered.Digest.String()},
		{reg.Host + "/keyless/good:1", "", ""},
		{reg.Host + "/keyless/tag:1", "", ""},
		{reg.Host + "/keyless/stranger:1", "", "certificate identity mismatch: want issuer https://issuer.example, subject ci@example.com, got issuer https://issuer.example, subject mallory@example.com"},
		{reg.Host + "/signed/legacy:1", "other", ""},
		{reg.Host + "/signed/legacy:1", "strict", fmt.Sprintf(`(scope "%s/signed/legacy" of namespace "strict"): wrong key`, reg.Host)},
	} {
		err := pull(tc.image, tc.ns)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("pull %s (namespace %q): %v", tc.image, tc.ns, err)
		case tc.want != "" && err == nil:
			t.Errorf("pull %s (namespace %q) succeeded, want a refusal with %q", tc.image, tc.ns, tc.want)
		case tc.want != "":
			// PermissionDenied: kubelet shows it as ErrImagePull, with the message.
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.image) {
				t.Errorf("pull %s (namespace %q): %v, want PermissionDenied naming the image and %q", tc.image, tc.ns, err, tc.want)
			}
		}
	}
	// Nothing of a refused image was stored.
	if st, err := ic.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: reg.Host + "/unsigned/app:1"}, false); err != nil || st.Image != nil {
		t.Errorf("refused image present: %+v %v", st, err)
	}

	// A pod whose busybox was verified at pull creates its container; after
	// the policy asks for another key (SIGHUP), the image on the node is
	// checked again at CreateContainer and refused.
	busyboxRef := reg.Host + "/" + harness.BusyboxRepo
	if err := pull(busyboxRef, "itest"); err != nil {
		t.Fatalf("pull busybox: %v\n%s", err, d.Logs)
	}
	podCfg := podConfig("policy")
	podCfg.LogDirectory = t.TempDir()
	pod, err := rt.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	t.Cleanup(func() {
		rt.StopPodSandbox(context.Background(), pod)
		rt.RemovePodSandbox(context.Background(), pod)
	})
	cfg := func(n string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: n}, Image: &runtimeapi.ImageSpec{Image: busyboxRef},
			Command: []string{"true"}, LogPath: n + ".log"}
	}
	if _, err := rt.CreateContainer(ctx, pod, cfg("before"), podCfg); err != nil {
		t.Fatalf("create under the first policy: %v\n%s", err, d.Logs)
	}
	st, err := rt.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Info["imagePolicy"]
	writePolicy("wrong.pub")
	d.Cmd.Process.Signal(syscall.SIGHUP)
	harness.WaitFor(t, "policy reload", 10*time.Second, func() bool { return d.Logs.Contains("reload: image policy") })
	st, err = rt.Status(ctx, true)
	if err != nil || st.Info["imagePolicy"] == before || !strings.Contains(st.Info["imagePolicy"], policyPath) {
		t.Errorf("verbose Status: image policy %q, before the reload %q (%v)", st.GetInfo()["imagePolicy"], before, err)
	}
	_, err = rt.CreateContainer(ctx, pod, cfg("after"), podCfg)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "wrong key: no signature verifies with key "+filepath.Join(keys, "wrong.pub")) {
		t.Errorf("create after the policy changed: %v, want PermissionDenied for the wrong key", err)
	}
	// An image mounted as a volume is checked the same way: the container's
	// own image passes (checked now for this namespace, from the registry),
	// its busybox volume does not.
	bb, err := ic.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: busyboxRef}, false)
	if err != nil || bb.Image == nil {
		t.Fatalf("busybox status: %v", err)
	}
	withVolume := cfg("volume")
	withVolume.Image = &runtimeapi.ImageSpec{Image: reg.Host + "/signed/bundle:1"}
	withVolume.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtimeapi.ImageSpec{Image: bb.Image.Id}}}
	_, err = rt.CreateContainer(ctx, pod, withVolume, podCfg)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "test/busybox@") || !strings.Contains(err.Error(), "wrong key") {
		t.Errorf("create with a volume image no longer allowed: %v, want PermissionDenied naming busybox", err)
	}
}
