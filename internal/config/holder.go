package config

import (
	"sync/atomic"

	configv1 "github.com/berth-cri/berth/api/config/v1"
)

// Holder is the live configuration: SIGHUP swaps in a newly validated one,
// and readers take a consistent snapshot with Get. Settings that cannot change
// without a restart (paths, the socket) are read once at start by the parts
// that own them and never from here.
type Holder struct {
	p atomic.Pointer[configv1.Config]
}

// NewHolder holds c.
func NewHolder(c *configv1.Config) *Holder {
	h := &Holder{}
	h.p.Store(c)
	return h
}

// Get returns the current configuration; callers must not modify it.
func (h *Holder) Get() *configv1.Config { return h.p.Load() }

// Set replaces the configuration.
func (h *Holder) Set(c *configv1.Config) { h.p.Store(c) }
