package oci

import (
	"errors"
	"slices"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestParseCapBnd(t *testing.T) {
	// This VM's mask: every capability up to 40 except CAP_SYS_RESOURCE (24).
	caps, err := parseCapBnd([]byte("Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(caps) != 40 || slices.Contains(caps, "CAP_SYS_RESOURCE") || !slices.Contains(caps, "CAP_CHECKPOINT_RESTORE") {
		t.Fatalf("caps = %q", caps)
	}
	if _, err := parseCapBnd([]byte("CapBnd:\tzz\n")); err == nil {
		t.Fatal("bad mask accepted")
	}
	if _, err := parseCapBnd([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing line accepted")
	}
}

func TestProbeHost(t *testing.T) {
	h, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.BoundingCaps) == 0 || h.Devices == nil {
		t.Fatalf("host = %+v", h)
	}
}

func TestHostDevices(t *testing.T) {
	d, err := HostDevices("/dev/null")
	if err != nil || len(d) != 1 || d[0].Type != "c" || d[0].Major != 1 || d[0].Minor != 3 {
		t.Fatalf("/dev/null = %+v, %v", d, err)
	}
	if _, err := HostDevices("/dev/berth-nonexistent"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
	if _, err := HostDevices("/etc/hostname"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("regular file: %v", err)
	}
	all, err := HostDevices("/dev")
	if err != nil || len(all) == 0 {
		t.Fatalf("/dev: %d devices, %v", len(all), err)
	}
	for _, d := range all {
		if d.Path == "/dev/console" || d.Path == "/dev/pts/ptmx" {
			t.Errorf("%s must not be copied from the host", d.Path)
		}
	}
}
