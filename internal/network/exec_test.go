package network

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOneProc(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"added", []string{"CNI_COMMAND=ADD"}, []string{"CNI_COMMAND=ADD", "GOMAXPROCS=1"}},
		{"berthd's own replaced", []string{"GOMAXPROCS=8", "PATH=/bin"}, []string{"PATH=/bin", "GOMAXPROCS=1"}},
		{"a longer name kept", []string{"GOMAXPROCSX=8"}, []string{"GOMAXPROCSX=8", "GOMAXPROCS=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.environ)
			if got := oneProc(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(in, tt.environ) {
				t.Errorf("the input was changed: %q", tt.environ)
			}
		})
	}
}

// TestPluginExecEnvironment runs a plugin (a script printing its
// environment) through the exec libcni is given.
func TestPluginExecEnvironment(t *testing.T) {
	plugin := filepath.Join(t.TempDir(), "envdump")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\nenv\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := PluginExec().ExecPlugin(context.Background(), plugin, nil, []string{"GOMAXPROCS=8", "CNI_COMMAND=ADD"})
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !slices.Contains(env, "GOMAXPROCS=1") || slices.Contains(env, "GOMAXPROCS=8") || !slices.Contains(env, "CNI_COMMAND=ADD") {
		t.Errorf("the plugin's environment: %q", env)
	}
}
