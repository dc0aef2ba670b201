// Package runtimeinfo serves the CRI calls about the runtime itself:
// Version, Status and RuntimeConfig.
package runtimeinfo

import (
	"github.com/berth-cri/berth/internal/apparmor"
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/criu"
	"github.com/berth-cri/berth/internal/imagepolicy"
)

// ImagePolicy tells which image policy is in force (for verbose Status);
// *imagepolicy.Enforcer implements it.
type ImagePolicy interface{ Policy() *imagepolicy.Policy }

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
	apparmor     apparmor.Status
	// policy may be nil (Status then says nothing of it).
	policy ImagePolicy
	// criu is what the probe at start found (checkpoint/restore).
	criu criu.Info
}

// Platform is what berthd settled about the node at start.
type Platform struct {
	// CgroupDriver is the resolved driver.
	CgroupDriver cgroupdriver.Driver
	// AppArmor says which default profile containers get, if any.
	AppArmor apparmor.Status
}

// New returns the service.
func New(cfg *config.Holder, network Network, ready Readiness, pf Platform) *Service {
	return &Service{cfg: cfg, network: network, ready: ready, features: newFeatures(), cgroupDriver: pf.CgroupDriver, apparmor: pf.AppArmor}
}

// WithImagePolicy makes verbose Status report the image policy in force
// (its path and version) and returns s.
func (s *Service) WithImagePolicy(p ImagePolicy) *Service {
	s.policy = p
	return s
}

// SetCriu records the CRIU probe's result for verbose Status.
func (s *Service) SetCriu(i criu.Info) { s.criu = i }
