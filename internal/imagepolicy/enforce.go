package imagepolicy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/registry"
)

// maxVerdicts bounds the verdict cache; past it the cache starts over
// (a verdict lost costs one more check, never a wrong answer).
const maxVerdicts = 4096

// Enforcer applies the current policy. It is safe for concurrent use.
type Enforcer struct {
	log     logrus.FieldLogger
	metrics *metrics.Metrics

	// mu guards the fields below; never held during I/O.
	mu     sync.Mutex
	policy *Policy // nil: no policy, every image is accepted
	// verdicts holds the images accepted, with the policy version that
	// accepted them: a check under the same version costs a map lookup.
	verdicts map[verdictKey]string
	// path, when set, keeps the verdicts across restarts (see Persist).
	path string

	// saveMu serialises the writes of the verdict file, so an older
	// snapshot never replaces a newer one. Taken before mu.
	saveMu sync.Mutex
}

// verdictKey is what a verdict depends on besides the policy: the manifest,
// the name scopes were matched against and the namespace.
type verdictKey struct {
	digest   digest.Digest
	name, ns string
}

// NewEnforcer returns an enforcer without a policy; m may be nil.
func NewEnforcer(log logrus.FieldLogger, m *metrics.Metrics) *Enforcer {
	return &Enforcer{log: log, metrics: m, verdicts: map[verdictKey]string{}}
}

// SetPolicy replaces the policy (nil: none). Verdicts of another version no
// longer count: the images they accepted are checked again at their next
// pull or container create.
func (e *Enforcer) SetPolicy(p *Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policy = p
}

// Policy is the policy in force, or nil.
func (e *Enforcer) Policy() *Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.policy
}

// Check enforces the policy on t for a pod of namespace ns (empty for the
// node's own pulls): nil when t may run, a *Denial (wrapping
// errdefs.ErrPermissionDenied) naming the image, the scope and what was
// missing, or the error that kept its signatures from being read. src
// reads t's signatures; it is used only when the policy asks for them and
// no verdict of this policy version accepted t already.
func (e *Enforcer) Check(ctx context.Context, t Target, ns string, src Source) error {
	e.mu.Lock()
	p := e.policy
	key := verdictKey{t.Digest, t.Name, ns}
	cached := p != nil && e.verdicts[key] == p.Version
	e.mu.Unlock()
	if p == nil || cached {
		return nil
	}
	reqs := p.Decide(t.Name, ns)
	needSigs := false
	for _, r := range reqs {
		switch r.Type {
		case TypeReject:
			e.metrics.ImageVerified(metrics.VerifyRejected, 0)
			err := r.check(t, Discovery{})
			e.logVerdict(ctx, t, ns, p, 0, err)
			return err
		case TypeSigstore:
			needSigs = true
		}
	}
	if !needSigs {
		return nil
	}
	start := time.Now()
	err := verifyTarget(ctx, t, reqs, src)
	if errors.Is(err, errdefs.ErrPermissionDenied) && t.Platform != nil {
		// The index is not signed as asked; its platform manifest may be.
		if pt, ok := t.Platform(); ok && verifyTarget(ctx, pt, reqs, src) == nil {
			err = nil
		}
	}
	took := time.Since(start)
	e.logVerdict(ctx, t, ns, p, took, err)
	switch {
	case err == nil:
		e.metrics.ImageVerified(metrics.VerifyAccepted, took)
	case errors.Is(err, errdefs.ErrPermissionDenied):
		e.metrics.ImageVerified(metrics.VerifyRejected, took)
		return err
	default:
		e.metrics.ImageVerified(metrics.VerifyError, took)
		return err
	}
	e.mu.Lock()
	if len(e.verdicts) >= maxVerdicts {
		e.verdicts = map[verdictKey]string{}
	}
	e.verdicts[key] = p.Version
	e.mu.Unlock()
	e.save()
	return nil
}

// verdictRecord is one verdict as the file keeps it.
type verdictRecord struct {
	Digest    digest.Digest `json:"digest"`
	Name      string        `json:"name"`
	Namespace string        `json:"namespace,omitempty"`
	Version   string        `json:"policy_version"`
}

// Persist keeps the verdicts in the file at path (under root_dir) and
// loads the ones a previous berthd left. Without it a restart forgets
// them, and the first create of every image reads its signatures again: a
// registry down then would keep containers of verified images from
// restarting. A verdict names the policy version (a hash of its content),
// so one left by another policy never counts. An unreadable file is
// logged and started afresh: a lost verdict costs one more check.
func (e *Enforcer) Persist(path string) {
	var recs []verdictRecord
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &recs); err != nil {
			e.log.WithError(err).WithField("file", path).Warn("image policy: dropping an unreadable verdict file")
			recs = nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		e.log.WithError(err).WithField("file", path).Warn("image policy: cannot read the verdict file")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.path = path
	for _, r := range recs {
		if len(e.verdicts) < maxVerdicts {
			e.verdicts[verdictKey{r.Digest, r.Name, r.Namespace}] = r.Version
		}
	}
}

// save writes the verdicts of the policy in force, when Persist was
// called. Not fsynced: a verdict lost to a power cut costs one check.
func (e *Enforcer) save() {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	e.mu.Lock()
	path := e.path
	var recs []verdictRecord
	if path != "" && e.policy != nil {
		for k, v := range e.verdicts {
			if v == e.policy.Version {
				recs = append(recs, verdictRecord{k.digest, k.name, k.ns, v})
			}
		}
	}
	e.mu.Unlock()
	if path == "" {
		return
	}
	sort.Slice(recs, func(i, j int) bool {
		return recs[i].Digest+digest.Digest(recs[i].Name+recs[i].Namespace) < recs[j].Digest+digest.Digest(recs[j].Name+recs[j].Namespace)
	})
	if recs == nil {
		recs = []verdictRecord{}
	}
	if err := atomicfile.WriteJSONVolatile(path, recs, 0o600); err != nil {
		e.log.WithError(err).WithField("file", path).Warn("image policy: cannot save the verdicts")
	}
}

// verifyTarget reads t's manifest (if need be) and signatures and checks
// them against every requirement.
func verifyTarget(ctx context.Context, t Target, reqs []*Requirement, src Source) error {
	if t.Manifest == nil {
		data, err := t.ReadManifest()
		if err != nil {
			return fmt.Errorf("image %s: read its manifest for the image policy: %w", t.Image, err)
		}
		t.Manifest = data
	}
	found, err := Discover(ctx, src, t.Digest)
	if err != nil {
		if errors.Is(err, registry.ErrRegistryUnavailable) {
			// Its "RegistryUnavailable" prefix stays first: kubelet
			// shows that reason (and retries) only then.
			return fmt.Errorf("%w (reading the signatures of %s for the image policy)", err, t.Image)
		}
		return fmt.Errorf("image %s: read its signatures for the image policy: %w", t.Image, err)
	}
	for _, r := range reqs {
		if err := r.check(t, found); err != nil {
			return err
		}
	}
	return nil
}

func (e *Enforcer) logVerdict(ctx context.Context, t Target, ns string, p *Policy, took time.Duration, err error) {
	log := logctx.G(ctx, e.log).WithFields(logrus.Fields{"image": t.Image, "digest": t.Digest, "namespace": ns, "policy_version": p.Version, "took": took})
	var d *Denial
	switch {
	case err == nil:
		log.Info("image policy: accepted")
	case errors.As(err, &d):
		log.WithField("scope", d.Scope).Warn("image policy: refused: " + d.Reason)
	default:
		log.WithError(err).Warn("image policy: could not check")
	}
}
