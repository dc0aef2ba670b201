package config

import (
	"slices"
	"strings"
	"testing"
)

func TestCDISpecDirs(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
		err  string
	}{
		{"default", "", []string{"/etc/cdi", "/var/run/cdi"}, ""},
		{"set", `cdi_spec_dirs = ["/opt/cdi"]`, []string{"/opt/cdi"}, ""},
		{"none", `cdi_spec_dirs = []`, []string{}, ""},
		{"relative", `cdi_spec_dirs = ["/etc/cdi", "cdi"]`, nil, `"cdi_spec_dirs": entry 1 must be an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Load(writeConfig(t, tt.toml, nil))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.Config.CDISpecDirs, tt.want) {
				t.Errorf("cdi_spec_dirs = %q, want %q", l.Config.CDISpecDirs, tt.want)
			}
		})
	}
}
