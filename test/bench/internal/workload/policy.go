package workload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/bench/internal/signedimage"
	"github.com/berth-cri/berth/test/bench/internal/target"
)

// PolicyName is the image-policy workload.
const PolicyName = "image-policy"

// The image-policy workload's repositories in the test registry: the same
// image in both; the policy puts the first under a sigstore scope and
// leaves the second to its default, accept. The unsigned tag in the
// signed repository proves the policy is in force.
const (
	policySignedRepo  = "berth-bench/policy-signed"
	policyAcceptRepo  = "berth-bench/policy-accept"
	policyTag         = "1"
	policyUnsignedTag = "unsigned"
	policyKeyFile     = "bench-policy.pub"
)

var policyFigures = []Figure{
	{ID: "policy.cold.verified", Title: "PullImage after RemoveImage, image verified (sigstore scope, one key, cosign tag; no verdict: a new namespace)", Unit: "ms"},
	{ID: "policy.cold.accept", Title: "  the same pull, repository under accept", Unit: "ms"},
	{ID: "policy.cold.added", Title: "  added cost of verification (verified − accept, paired)", Unit: "ms"},
	{ID: "policy.warm.verified", Title: "PullImage of the image present, verified (no verdict: a new namespace)", Unit: "ms"},
	{ID: "policy.warm.accept", Title: "  the same pull, repository under accept", Unit: "ms"},
	{ID: "policy.warm.added", Title: "  added cost of verification (verified − accept, paired)", Unit: "ms"},
	{ID: "policy.verdict.verified", Title: "PullImage of the image present, verdict kept (the pod's namespace, policy unchanged)", Unit: "ms"},
	{ID: "policy.verdict.accept", Title: "  the same pull, repository under accept", Unit: "ms"},
	{ID: "policy.verdict.added", Title: "  added cost of the policy (verified − accept, paired)", Unit: "ms"},
	{ID: "policy.create.verified", Title: "CreateContainer of the verified image (verdict kept), then removed", Unit: "ms"},
	{ID: "policy.create.accept", Title: "  the same image, repository under accept", Unit: "ms"},
	{ID: "policy.create.added", Title: "  added cost of the policy check (verified − accept, paired)", Unit: "ms"},
}

// imagePolicy measures what berthd's image policy (registry.image_policy)
// adds to PullImage, cold and warm, and to CreateContainer: each sample
// times the same operation on two images that differ only by a label, one
// in a repository the policy verifies and one in a repository it accepts
// unchecked, in alternating order, and records both and their difference.
// berthd keeps a verdict per manifest, repository, namespace and policy
// version once signatures verified: pulls for a namespace of their own
// (as kubelet's first pull for a pod of a new namespace) pay the full
// verification, pulls and creates for the pod's namespace find the
// verdict. The images are busybox's files plus a random file, one layer
// of their own (a cold pull stays cold), signed with a key generated for
// the run. A runtime without an image_policy file in targets.json
// (containerd) is n/a.
type imagePolicy struct {
	cfg            Config
	pod            *pod
	signed, accept string
	n              int
}

// policyArmed holds the targets whose policy this process has written and
// had re-read: the image is pushed and signed once per run.
var policyArmed sync.Map

func (w *imagePolicy) Setup(ctx context.Context, t *target.Target) error {
	if t.ImagePolicy == "" {
		return fmt.Errorf("%w: no image_policy for %s in targets.json", ErrNotApplicable, t.Name)
	}
	base, err := name.ParseReference(w.cfg.Image)
	if err != nil {
		return err
	}
	host := base.Context().RegistryStr()
	w.signed = host + "/" + policySignedRepo + ":" + policyTag
	w.accept = host + "/" + policyAcceptRepo + ":" + policyTag
	if _, done := policyArmed.Load(t.Name); !done {
		if err := armPolicy(ctx, t, w.cfg.Image, host, w.signed, w.accept); err != nil {
			return err
		}
		policyArmed.Store(t.Name, true)
	}
	if err := podSetup(ctx, t, w.cfg); err != nil {
		return err
	}
	p, err := runPod(ctx, t, "policy")
	if err != nil {
		return err
	}
	w.pod = p
	return ensureImages(ctx, t, w.signed, w.accept)
}

// armPolicy pushes the image to both repositories, signs it in the signed
// one, writes the policy and its key beside t's policy file, has berthd
// re-read it (SIGHUP, then the policy version in verbose Status changes),
// and checks that an unsigned image of the signed repository is refused.
func armPolicy(ctx context.Context, t *target.Target, baseImage, host, signed, accept string) error {
	ds, err := signedimage.Push(ctx, baseImage, signed, accept)
	if err != nil {
		return err
	}
	unsigned := host + "/" + policySignedRepo + ":" + policyUnsignedTag
	if err := signedimage.Copy(ctx, baseImage, unsigned); err != nil {
		return err
	}
	dir := filepath.Dir(t.ImagePolicy)
	if _, err := signedimage.Sign(host, policySignedRepo, ds[0], dir, policyKeyFile); err != nil {
		return err
	}
	before, err := policyVersion(ctx, t)
	if err != nil {
		return err
	}
	policy := fmt.Sprintf("# written by berth-bench's %s workload\n[default]\ntype = \"accept\"\n\n[scopes.%q]\ntype = \"sigstore\"\nkeys = [%q]\n",
		PolicyName, host+"/"+policySignedRepo, policyKeyFile)
	tmp := t.ImagePolicy + ".tmp"
	if err := os.WriteFile(tmp, []byte(policy), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, t.ImagePolicy); err != nil {
		return err
	}
	if err := syscall.Kill(t.DaemonPID, syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP %s: %w", t.Name, err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v, err := policyVersion(ctx, t)
		if err != nil {
			return err
		}
		if v != before {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not re-read %s after SIGHUP (verbose Status imagePolicy still %q)", t.Name, t.ImagePolicy, v)
		}
	}
	_, err = t.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: unsigned}, nil, nil)
	if status.Code(err) != codes.PermissionDenied {
		return fmt.Errorf("the policy is not in force: PullImage %s (unsigned, in the sigstore scope): want PermissionDenied, got %v", unsigned, err)
	}
	return nil
}

// policyVersion is the imagePolicy entry of t's verbose Status (the file
// and the policy version).
func policyVersion(ctx context.Context, t *target.Target) (string, error) {
	st, err := t.Runtime.Status(ctx, true)
	if err != nil {
		return "", fmt.Errorf("Status: %w", err)
	}
	return st.GetInfo()["imagePolicy"], nil
}

func (w *imagePolicy) Run(ctx context.Context, t *target.Target, rec Recorder) error {
	refs := [2]string{w.signed, w.accept}
	n := w.cfg.perRound(w.cfg.Samples)
	// A namespace no verdict covers: one per sample, the same for both
	// images, so that only the policy tells them apart.
	var fresh *runtimeapi.PodSandboxConfig
	newNamespace := func() {
		fresh = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{
			Name: "policy", Namespace: "berth-bench-policy-" + randomID(), Uid: randomID()}}
	}
	if err := w.paired(n, rec, "policy.cold", newNamespace, func(ref string) (time.Duration, error) {
		if err := removeImages(ctx, t, refs[:]...); err != nil {
			return 0, err
		}
		return pullOf(ctx, t, ref, fresh)
	}); err != nil {
		return err
	}
	if err := w.paired(n, rec, "policy.warm", newNamespace, func(ref string) (time.Duration, error) {
		return pullOf(ctx, t, ref, fresh)
	}); err != nil {
		return err
	}
	// One pull for the pod's namespace, unmeasured, leaves the verdict
	// its later pulls and creates find.
	for _, ref := range refs {
		if _, err := pullOf(ctx, t, ref, w.pod.config); err != nil {
			return err
		}
	}
	if err := w.paired(n, rec, "policy.verdict", nil, func(ref string) (time.Duration, error) {
		return pullOf(ctx, t, ref, w.pod.config)
	}); err != nil {
		return err
	}
	return w.paired(n, rec, "policy.create", nil, func(ref string) (time.Duration, error) {
		w.n++
		cfg := newContainerConfig(fmt.Sprintf("c%d", w.n), ref, sleepCmd)
		t0 := time.Now()
		id, err := t.Runtime.CreateContainer(ctx, w.pod.id, cfg, w.pod.config)
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("CreateContainer %s: %w", ref, err)
		}
		if err := t.Runtime.RemoveContainer(ctx, id); err != nil {
			return 0, fmt.Errorf("RemoveContainer: %w", err)
		}
		return d, nil
	})
}

// paired runs op n times on each image, alternating which goes first, and
// records prefix.verified, prefix.accept and their difference. before,
// when set, runs ahead of each pair.
func (w *imagePolicy) paired(n int, rec Recorder, prefix string, before func(), op func(ref string) (time.Duration, error)) error {
	refs := [2]string{w.signed, w.accept}
	for i := range n {
		if before != nil {
			before()
		}
		var d [2]time.Duration
		for j := range 2 {
			k := (i + j) % 2
			var err error
			if d[k], err = op(refs[k]); err != nil {
				return err
			}
		}
		rec.Record(prefix+".verified", ms(d[0]))
		rec.Record(prefix+".accept", ms(d[1]))
		rec.Record(prefix+".added", ms(d[0]-d[1]))
	}
	return nil
}

// pullOf times PullImage of ref for a pod of sandbox's namespace.
func pullOf(ctx context.Context, t *target.Target, ref string, sandbox *runtimeapi.PodSandboxConfig) (time.Duration, error) {
	t0 := time.Now()
	if _, err := t.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, sandbox); err != nil {
		return 0, fmt.Errorf("PullImage %s: %w", ref, err)
	}
	return time.Since(t0), nil
}

// removeImages removes refs; an image already gone is no error.
func removeImages(ctx context.Context, t *target.Target, refs ...string) error {
	for _, ref := range refs {
		err := t.Images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: ref})
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("RemoveImage %s: %w", ref, err)
		}
	}
	return nil
}

// Teardown removes the pod; the images stay for the next round (the work
// dir goes at the end), and so does the policy, which covers only the
// workload's own repositories.
func (w *imagePolicy) Teardown(ctx context.Context, t *target.Target) error {
	return removePods(ctx, t, []*pod{w.pod})
}
