package runtimeinfo

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/config"
)

type readyNet struct{}

func (readyNet) Status() (bool, string, string) { return true, "", "" }
func (readyNet) SetPodCIDR(string)              {}
func (readyNet) Ready() bool                    { return true }

// TestCgroupDriverReported checks that RuntimeConfig and verbose Status
// report the driver resolved at start, never the configured "auto".
func TestCgroupDriverReported(t *testing.T) {
	for _, tt := range []struct {
		driver cgroupdriver.Driver
		want   runtimeapi.CgroupDriver
	}{
		{cgroupdriver.Systemd, runtimeapi.CgroupDriver_SYSTEMD},
		{cgroupdriver.Cgroupfs, runtimeapi.CgroupDriver_CGROUPFS},
	} {
		cfg := &configv1.Config{CgroupDriver: "auto", DefaultRuntime: "runc", Runtimes: map[string]configv1.Runtime{"runc": {Type: configv1.RuntimeLibcontainer}}}
		s := New(config.NewHolder(cfg), readyNet{}, readyNet{}, Platform{CgroupDriver: tt.driver})
		rc, err := s.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
		if err != nil || rc.GetLinux().GetCgroupDriver() != tt.want {
			t.Errorf("%s: RuntimeConfig = %v, %v; want %v", tt.driver, rc, err, tt.want)
		}
		st, err := s.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
		if err != nil || st.Info["cgroupDriver"] != string(tt.driver) {
			t.Errorf("%s: verbose Status info %v, %v", tt.driver, st.GetInfo(), err)
		}
	}
}
