package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/content"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/flight"
	"github.com/berth-cri/berth/internal/image/reference"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/snapshot"
)

// Resolver is what pulls need of the registry client; *registry.Resolver
// implements it.
type Resolver interface {
	Resolve(ctx context.Context, ref reference.Ref, auth *registry.Auth) (ocispec.Descriptor, []byte, error)
	FetchManifest(ctx context.Context, ref reference.Ref, desc ocispec.Descriptor, auth *registry.Auth) ([]byte, error)
	FetchBlob(ctx context.Context, ref reference.Ref, desc ocispec.Descriptor, auth *registry.Auth) (io.ReadCloser, error)
	Referrers(ctx context.Context, ref reference.Ref, d digest.Digest, artifactType string, auth *registry.Auth) ([]ocispec.Descriptor, error)
	Reload(registry.Options) error
}

// Snapshotter is what the image service needs of the layer snapshot store;
// *snapshot.Store implements it. Every snapshot in it is a layer keyed by
// chain ID and owned by this service (start-up removes the ones no image
// references).
type Snapshotter interface {
	Unpack(ctx context.Context, chainID digest.Digest, r io.Reader, commit func() error) error
	Exists(chainID digest.Digest) bool
	Remove(chainID digest.Digest) error
	List() ([]digest.Digest, error)
	Usage() (snapshot.Usage, error)
	Mountpoint() string
}

// Options configure a Service.
type Options struct {
	// Root is berthd's root_dir: blobs go to Root/content, records to
	// Root/images.
	Root      string
	Resolver  Resolver
	Snapshots Snapshotter
	// MaxConcurrentDownloads bounds layer downloads across all pulls
	// (default 3).
	MaxConcurrentDownloads int
	// PullProgressTimeout cancels a download that moves no byte for this
	// long (default 5m; negative disables).
	PullProgressTimeout time.Duration
	// PinnedImages are references (the sandbox images) whose images are
	// reported pinned, so kubelet's image GC never removes them.
	PinnedImages []string
	// Platform to select from an index; nil is the host's
	// (platforms.DefaultSpec, variant-aware).
	Platform *ocispec.Platform
	Log      logrus.FieldLogger
	// Metrics records pull bytes and durations; nil records nothing.
	Metrics *metrics.Metrics
	// Policy enforces the image policy on pulls and CheckPolicy; nil
	// accepts every image.
	Policy PolicyChecker
}

// Service keeps the images of the node. It is safe for concurrent use.
type Service struct {
	content   *content.Store
	resolver  Resolver
	snapshots Snapshotter
	log       logrus.FieldLogger
	metrics   *metrics.Metrics
	policy    PolicyChecker
	platform  ocispec.Platform
	matcher   platforms.MatchComparer
	// timeout is the pull progress timeout in nanoseconds, atomic so
	// that a reload can change it under pulls in flight (each download
	// reads it once, when it starts).
	timeout atomic.Int64
	// sem bounds concurrent layer downloads across all pulls.
	sem chan struct{}

	// pulls and layers share a pull or a layer download between its
	// concurrent callers; it is cancelled once none waits any more.
	pulls  flight.Group[*Image]
	layers flight.Group[struct{}]

	// commitMu serialises the changes of the image records: held from
	// planning a change to applying it, around the disk writes, so that
	// nothing else changes the records meanwhile. Taken before mu.
	commitMu sync.Mutex
	// mu guards the fields below. It is never held during network or disk
	// I/O: record writes and their fsyncs run under commitMu alone, so a
	// slow disk holds up no Get, Use or List (every CreateContainer and
	// ImageStatus).
	mu sync.Mutex
	ix *index
	// pinned holds the lookup keys (ids, name:tag, name@digest) of
	// Options.PinnedImages.
	pinned []string
	// holders are the users (containers) of each image id; see Use.
	holders map[digest.Digest]map[string]struct{}
	// leases count the snapshots and blobs ("snap:"/"blob:" + digest) a pull
	// in progress relies on, which GC must not delete.
	leases map[string]int
	// deleting holds the snapshots and blobs GC is deleting right now; a
	// pull that needs one waits for the channel to close, then re-creates it.
	deleting map[string]chan struct{}
}

// New opens the content store and the image records under opts.Root and
// reconciles them with the snapshots: records whose config or snapshots are
// missing are dropped, and snapshots and blobs no record references are
// deleted (both logged).
func New(opts Options) (*Service, error) {
	if opts.Resolver == nil || opts.Snapshots == nil {
		return nil, fmt.Errorf("image service: resolver and snapshots are required: %w", errdefs.ErrInvalidArgument)
	}
	log := opts.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	cs, err := content.Open(filepath.Join(opts.Root, "content"))
	if err != nil {
		return nil, err
	}
	n := opts.MaxConcurrentDownloads
	if n <= 0 {
		n = 3
	}
	plat := platforms.DefaultSpec()
	if opts.Platform != nil {
		plat = platforms.Normalize(*opts.Platform)
	}
	s := &Service{
		content:   cs,
		resolver:  opts.Resolver,
		snapshots: opts.Snapshots,
		log:       log,
		metrics:   opts.Metrics,
		policy:    opts.Policy,
		platform:  plat,
		matcher:   platforms.Only(plat),
		sem:       make(chan struct{}, n),
		holders:   map[digest.Digest]map[string]struct{}{},
		leases:    map[string]int{},
		deleting:  map[string]chan struct{}{},
	}
	s.pulls.CancelAbandoned = true
	s.layers.CancelAbandoned = true
	s.SetPullProgressTimeout(opts.PullProgressTimeout)
	if err := s.SetPinned(opts.PinnedImages); err != nil {
		return nil, err
	}
	if s.ix, err = loadIndex(filepath.Join(opts.Root, "images"), log); err != nil {
		return nil, err
	}
	for id, r := range s.ix.retained {
		s.holders[id] = map[string]struct{}{}
		for _, h := range r.Holders {
			s.holders[id][h] = struct{}{}
		}
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetPinned replaces the references (the sandbox images) whose images are
// reported pinned; berthd calls it again when a reload changes them.
func (s *Service) SetPinned(refs []string) error {
	var keys []string
	for _, p := range refs {
		key, id, err := lookupKey(p)
		if err != nil {
			return fmt.Errorf("pinned image: %w", err)
		}
		if id != "" {
			key = id.String()
		}
		keys = append(keys, key)
	}
	s.mu.Lock()
	s.pinned = keys
	s.mu.Unlock()
	return nil
}

// SetPullProgressTimeout sets the progress timeout of downloads started
// from now on (image_pull_progress_timeout; 0 is the 5 min default).
func (s *Service) SetPullProgressTimeout(d time.Duration) {
	if d == 0 {
		d = 5 * time.Minute
	}
	s.timeout.Store(int64(d))
}

// Get returns the image ref names: an id (sha256:<hex> or bare hex), a tag
// or a repo digest, normalised as kubelet does. An absent image wraps
// errdefs.ErrNotFound; a string that is none of these ErrInvalidArgument.
func (s *Service) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.ix.get(ref)
	if err != nil {
		return Image{}, err
	}
	return s.view(img), nil
}

// List returns every image, or, with a non-empty filter, the image the
// filter names (none if absent), sorted by id.
func (s *Service) List(filter string) ([]Image, error) {
	if filter != "" {
		img, err := s.Get(filter)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []Image{img}, nil
	}
	s.mu.Lock()
	out := make([]Image, 0, len(s.ix.images))
	for _, img := range s.ix.images {
		out = append(out, s.view(img))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// view is the copy of img handed out, with Pinned computed. s.mu is held.
func (s *Service) view(img *Image) Image {
	v := img.clone()
	for _, p := range s.pinned {
		if p == img.ID.String() || slices.Contains(img.RepoTags, p) || slices.Contains(img.RepoDigests, p) {
			v.Pinned = true
			break
		}
	}
	return v
}

// ContentStore is the store of manifests and configs (for the verbose
// ImageStatus, which shows the config as stored).
func (s *Service) ContentStore() *content.Store { return s.content }

// Reload applies new registry settings to later pulls.
func (s *Service) Reload(opts registry.Options) error {
	return s.resolver.Reload(opts)
}

// FsUsage is the disk used by images: layer snapshots plus content store.
type FsUsage struct {
	// Mountpoint is the snapshot root, the filesystem kubelet watches.
	Mountpoint string
	Bytes      int64
	Inodes     int64
}

// FsUsage measures the image filesystem.
func (s *Service) FsUsage() (FsUsage, error) {
	su, err := s.snapshots.Usage()
	if err != nil {
		return FsUsage{}, fmt.Errorf("image filesystem usage: %w", err)
	}
	cu, err := s.content.Usage()
	if err != nil {
		return FsUsage{}, fmt.Errorf("image filesystem usage: %w", err)
	}
	return FsUsage{Mountpoint: s.snapshots.Mountpoint(), Bytes: su.Bytes + cu.Bytes, Inodes: su.Inodes + cu.Inodes}, nil
}

// Use records that holder (a container id) uses the image ref names, and
// returns the image. Until the matching Release, the image's snapshots
// survive RemoveImage (which still removes the record at once, as
// containerd does). Holders are kept in memory: the container service calls
// Use again for its containers at start-up; only the holders of a removed
// image are persisted, so its snapshots outlive a restart.
func (s *Service) Use(ref, holder string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.ix.get(ref)
	if err != nil {
		return Image{}, err
	}
	if s.holders[img.ID] == nil {
		s.holders[img.ID] = map[string]struct{}{}
	}
	s.holders[img.ID][holder] = struct{}{}
	return s.view(img), nil
}

// Release ends holder's use of image id (as Use returned it). Releasing
// what is not held is not an error. When the image was removed and this was
// its last holder, its snapshots and blobs are freed.
func (s *Service) Release(id, holder string) error {
	d, ok := reference.IsImageID(id)
	if !ok {
		return fmt.Errorf("release image %q: not an image id: %w", id, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	if hs := s.holders[d]; hs != nil {
		delete(hs, holder)
		if len(hs) == 0 {
			delete(s.holders, d)
		}
	}
	_, retained := s.ix.retained[d]
	s.mu.Unlock()
	if !retained {
		return nil
	}
	// Record the holders left, or delete the record with the last one.
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	r, retained := s.ix.retained[d]
	ops := s.ix.planRetainedHolders(d, s.holderList(d))
	s.mu.Unlock()
	if !retained {
		return nil
	}
	if err := s.ix.persist(ops); err != nil {
		return fmt.Errorf("release image %s: %w", id, err)
	}
	// Use cannot add a holder to a removed image; a Release meanwhile
	// waits for commitMu and records what is left after this one.
	s.mu.Lock()
	gone := s.ix.applyRetainedHolders(d, ops)
	var victims []string
	if gone {
		victims = s.unreferenced(r.ChainIDs, r.Blobs)
	}
	s.mu.Unlock()
	return s.collect(victims)
}

// holderList is the sorted holders of id; s.mu is held.
func (s *Service) holderList(id digest.Digest) []string {
	var out []string
	for h := range s.holders[id] {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Remove removes the image ref names, with all its tags and repo digests
// (CRI RemoveImage). An absent image is success: RemoveImage is idempotent
// (api.proto). Snapshots and blobs no other image or container needs are
// freed before it returns.
func (s *Service) Remove(ref string) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	var victims []string
	for {
		s.mu.Lock()
		img, err := s.ix.get(ref)
		if err != nil {
			s.mu.Unlock()
			if errors.Is(err, errdefs.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("remove image %q: %w", ref, err)
		}
		holders := s.holderList(img.ID)
		ops := s.ix.planRemove(img.ID, holders)
		s.mu.Unlock()
		if err := s.ix.persist(ops); err != nil {
			return fmt.Errorf("remove image %q: %w", ref, err)
		}
		s.mu.Lock()
		if !slices.Equal(s.holderList(img.ID), holders) {
			// A container began or ended using it during the write:
			// write the record again with the holders as they are now.
			s.mu.Unlock()
			continue
		}
		s.ix.applyRemove(img.ID, ops)
		if len(holders) == 0 {
			victims = s.unreferenced(img.ChainIDs, img.Blobs)
		}
		s.mu.Unlock()
		break
	}
	if err := s.collect(victims); err != nil {
		return fmt.Errorf("remove image %q: %w", ref, err)
	}
	return nil
}

// The production implementations of the interfaces above.
var (
	_ Resolver    = (*registry.Resolver)(nil)
	_ Snapshotter = (*snapshot.Store)(nil)
)
