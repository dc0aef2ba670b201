package fakes

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/config"
)

// PauseRef is the pause image a Set holds.
const PauseRef = "pause:test"

// Set is one of each fake, sharing a Recorder, and a config with one
// handler ("runc", of type oci) and PauseRef as the pause image: what a
// manager's unit tests wire.
type Set struct {
	R          *Recorder
	Images     *Images
	Snapshots  *Snapshots
	Supervisor *Supervisor
	Network    *Network
	NetNS      *NetNS
	Config     *config.Holder
}

// NewSet makes the fakes, the snapshots under a temp dir.
func NewSet(t testing.TB) *Set {
	r := &Recorder{}
	s := &Set{
		R: r, Images: &Images{R: r}, Snapshots: &Snapshots{R: r, Root: t.TempDir()}, Supervisor: &Supervisor{R: r},
		Network: &Network{R: r}, NetNS: &NetNS{R: r},
		Config: config.NewHolder(&configv1.Config{
			DefaultRuntime: "runc", SandboxImage: PauseRef,
			Runtimes: map[string]configv1.Runtime{"runc": {Type: configv1.RuntimeOCI, RuntimePath: "/bin/true"}},
		}),
	}
	s.Images.Add(PauseRef, NewImage(PauseRef))
	return s
}

// NullLog is a logger that drops its lines.
func NullLog() *logrus.Logger {
	l, _ := logtest.NewNullLogger()
	return l
}

// Leftovers lists what the fakes still hold for objects whose id keep
// rejects: image holds (by holder, "kind:id..."), snapshots, pod networks,
// netns pins and supervisor entries made by the calls logged.
func (s *Set) Leftovers(keep func(id string) bool) []string {
	var left []string
	for img, holders := range s.Images.Held() {
		for _, h := range holders {
			if _, id, _ := strings.Cut(h, ":"); !keep(strings.SplitN(id, ":", 2)[0]) {
				left = append(left, fmt.Sprintf("image %s held by %s", img, h))
			}
		}
	}
	for key := range s.Snapshots.Keys() {
		if !keep(strings.SplitN(key, "-vol", 2)[0]) {
			left = append(left, "snapshot "+key)
		}
	}
	for _, id := range s.Network.Pods() {
		if !keep(id) {
			left = append(left, "pod network "+id)
		}
	}
	for _, p := range s.NetNS.Pins() {
		if id := p[strings.LastIndex(p, "/")+1:]; !keep(id) {
			left = append(left, "netns pin "+p)
		}
	}
	for _, c := range s.R.Calls() {
		for _, op := range []string{"Supervisor.Create ", "Supervisor.Restore "} {
			if id, ok := strings.CutPrefix(c, op); ok && !keep(id) && s.Supervisor.Has(id) {
				left = append(left, "supervisor entry "+id)
			}
		}
	}
	return left
}
