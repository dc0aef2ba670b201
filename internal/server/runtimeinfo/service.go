// Package runtimeinfo serves the CRI calls about the runtime itself:
// Version, Status and RuntimeConfig.
package runtimeinfo

import (
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/criu"
)

// Network is what this service needs of the pod network manager.
type Network interface {
	// Status reports whether a usable network config is loaded, and why not.
	Status() (ready bool, reason, message string)
	// SetPodCIDR hands kubelet's pod CIDR to the CNI plugins (ipRanges).
	SetPodCIDR(cidr string)
}

// Readiness tells whether start-up recovery is done.
type Readiness interface{ Ready() bool }

// Service serves Version, Status and RuntimeConfig.
type Service struct {
	cfg      *config.Holder
	network  Network
	ready    Readiness
	features *features
	// cgroupDriver is the driver resolved at start, which kubelet must use too.
	cgroupDriver cgroupdriver.Driver
	// criu is what the probe at start found (checkpoint/restore).
	criu criu.Info
}

// New returns the service; cgroupDriver is the resolved driver.
func New(cfg *config.Holder, network Network, ready Readiness, cgroupDriver cgroupdriver.Driver) *Service {
	return &Service{cfg: cfg, network: network, ready: ready, features: newFeatures(), cgroupDriver: cgroupDriver}
}

// SetCriu records the CRIU probe's result for verbose Status.
func (s *Service) SetCriu(i criu.Info) { s.criu = i }
