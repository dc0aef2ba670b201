package oci

import (
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestAppArmorProfile(t *testing.T) {
	on := Host{AppArmorEnabled: true, AppArmorDefault: "berth-default"}
	noDefault := Host{AppArmorEnabled: true}
	off := Host{}
	loadedOnly := on
	loadedOnly.AppArmorLoaded = func(name string) (bool, error) { return name == "mine", nil }
	prof := func(ty runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: ty, LocalhostRef: ref}
	}
	for _, tc := range []struct {
		name       string
		host       Host
		prof       *runtimeapi.SecurityProfile
		deprecated string
		want       string
		wantErr    error
	}{
		{"nothing asked: the default", on, nil, "", "berth-default", nil},
		{"RuntimeDefault", on, prof(runtimeapi.SecurityProfile_RuntimeDefault, ""), "", "berth-default", nil},
		{"deprecated runtime/default", on, nil, "runtime/default", "berth-default", nil},
		{"RuntimeDefault without a loaded default", noDefault, prof(runtimeapi.SecurityProfile_RuntimeDefault, ""), "", "", nil},
		{"RuntimeDefault with AppArmor off", off, prof(runtimeapi.SecurityProfile_RuntimeDefault, ""), "", "", nil},
		{"Unconfined", on, prof(runtimeapi.SecurityProfile_Unconfined, ""), "", "", nil},
		{"deprecated unconfined", on, nil, "unconfined", "", nil},
		{"the field wins over the deprecated one", on, prof(runtimeapi.SecurityProfile_Unconfined, ""), "localhost/x", "", nil},
		{"Localhost", on, prof(runtimeapi.SecurityProfile_Localhost, "localhost/mine"), "", "mine", nil},
		{"Localhost without the prefix", on, prof(runtimeapi.SecurityProfile_Localhost, "mine"), "", "mine", nil},
		{"deprecated localhost", on, nil, "localhost/mine", "mine", nil},
		{"Localhost without a name", on, prof(runtimeapi.SecurityProfile_Localhost, ""), "", "", errdefs.ErrInvalidArgument},
		{"Localhost with AppArmor off", off, prof(runtimeapi.SecurityProfile_Localhost, "mine"), "", "", errdefs.ErrInvalidArgument},
		{"deprecated garbage", on, nil, "docker-default", "", errdefs.ErrInvalidArgument},
		{"Localhost not loaded", loadedOnly, prof(runtimeapi.SecurityProfile_Localhost, "localhost/other"), "", "", errdefs.ErrFailedPrecondition},
		{"Localhost loaded", loadedOnly, prof(runtimeapi.SecurityProfile_Localhost, "localhost/mine"), "", "mine", nil},
		{"deprecated localhost not loaded", loadedOnly, nil, "localhost/other", "", errdefs.ErrFailedPrecondition},
		{"the default is not looked up", loadedOnly, nil, "", "berth-default", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appArmorProfile(tc.host, tc.prof, tc.deprecated)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("profile = %q, want %q", got, tc.want)
			}
		})
	}
}
