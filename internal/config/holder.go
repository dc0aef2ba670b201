package config

import (
	"sync/atomic"

	configv1 "github.com/berth-cri/berth/api/config/v1"
)

// Holder is the configuration in force: SIGHUP swaps in a newly validated
// one, and readers take a consistent snapshot with Get. A reload leaves the
// keys that change only at restart at their running value (cmd/berthd's
// reloadTable), so what Get returns is what runs, never merely what the file
// says.
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
