package stats

import (
	"sync"
	"time"

	"github.com/berth-cri/berth/internal/snapshot"
)

// LayerUsage measures a container's writable layer by its snapshot key:
// snapshot.Store.RootfsUsage.
type LayerUsage func(key string) (snapshot.Usage, error)

// LayerCache remembers each writable layer's usage for a while. Measuring
// walks the layer's whole upper dir; kubelet asks for every container every
// 10s, and a container that writes many files would make each
// ListContainerStats a walk of all of them. containerd also serves snapshot
// usage from a periodic measurement.
type LayerCache struct {
	measure LayerUsage
	ttl     time.Duration

	mu      sync.Mutex
	entries map[string]layerEntry // mu guards entries
}

type layerEntry struct {
	usage snapshot.Usage
	at    time.Time
}

// NewLayerCache returns a cache that measures a key again once its last
// measurement is older than ttl.
func NewLayerCache(measure LayerUsage, ttl time.Duration) *LayerCache {
	return &LayerCache{measure: measure, ttl: ttl, entries: map[string]layerEntry{}}
}

// Get returns key's usage and when it was measured. Errors are not cached.
// Two callers missing the same key at once both measure it: the walk is
// read-only, and the later result simply wins.
func (c *LayerCache) Get(key string) (snapshot.Usage, time.Time, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.usage, e.at, nil
	}
	u, err := c.measure(key)
	if err != nil {
		return snapshot.Usage{}, time.Time{}, err
	}
	c.mu.Lock()
	c.entries[key] = layerEntry{usage: u, at: now}
	c.mu.Unlock()
	return u, now, nil
}

// Retain drops every key not in keep.
func (c *LayerCache) Retain(keep map[string]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if _, ok := keep[k]; !ok {
			delete(c.entries, k)
		}
	}
}
