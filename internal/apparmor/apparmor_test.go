package apparmor

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestPolicy(t *testing.T) {
	p, err := Policy("my-prof")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"profile my-prof flags=", "peer=my-prof,", "deny mount,"} {
		if !bytes.Contains(p, []byte(want)) {
			t.Errorf("policy lacks %q", want)
		}
	}
	for _, bad := range []string{"", "a b", "x{", "-lead", "a/b"} {
		if _, err := Policy(bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

// TestPolicyCompiles runs the real parser over the policy without loading
// it (-Q), so a syntax error fails here, not at a node's start. CI
// installs apparmor (hack/install-deps.sh).
func TestPolicyCompiles(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	testsupport.Require(t, err == nil, "apparmor_parser not installed (apt-get install apparmor)")
	p, err := Policy(DefaultProfile)
	if err != nil {
		t.Fatal(err)
	}
	// -S writes the compiled binary policy to stdout: proof it compiled.
	cmd := exec.Command(parser, "-Q", "-K", "-S")
	cmd.Stdin = bytes.NewReader(p)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || out.Len() == 0 {
		t.Fatalf("apparmor_parser: %v (%d bytes): %s", err, out.Len(), stderr.String())
	}
}

func TestEnsureDefault(t *testing.T) {
	// fakeParser records its arguments and the policy it was given.
	fakeParser := func(t *testing.T, dir string, rc int) string {
		p := filepath.Join(dir, "apparmor_parser")
		script := "#!/bin/sh\necho \"$@\" > " + dir + "/args\ncat > " + dir + "/policy\necho parser says no >&2\nexit " + strconv.Itoa(rc) + "\n"
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		enabled  string // "" for no file
		profiles string
		parser   int // -1: none
		profile  string
		want     Status
		wantErr  bool
		loads    bool
	}{
		{name: "apparmor off", enabled: "N\n", parser: 0, profile: DefaultProfile,
			want: Status{Reason: "AppArmor is not enabled in this kernel"}},
		{name: "no module", parser: 0, profile: DefaultProfile,
			want: Status{Reason: "AppArmor is not enabled in this kernel"}},
		{name: "no default configured", enabled: "Y\n", parser: 0, profile: "",
			want: Status{Enabled: true, Reason: "apparmor_default_profile is empty"}},
		{name: "already loaded: kept", enabled: "Y\n", profiles: "docker-default (enforce)\nberth-default (enforce)\n", parser: 0, profile: DefaultProfile,
			want: Status{Enabled: true, DefaultProfile: DefaultProfile}},
		{name: "a longer name is not the profile", enabled: "Y\n", profiles: "berth-default-old (enforce)\n", parser: 0, profile: DefaultProfile,
			want: Status{Enabled: true, DefaultProfile: DefaultProfile}, loads: true},
		{name: "parser fails", enabled: "Y\n", profiles: "", parser: 1, profile: DefaultProfile,
			want: Status{Enabled: true}, wantErr: true, loads: true},
		{name: "no parser", enabled: "Y\n", profiles: "", parser: -1, profile: DefaultProfile,
			want: Status{Enabled: true, Reason: ErrNoParser.Error()}, wantErr: true},
		{name: "bad name", enabled: "Y\n", parser: 0, profile: "a b", want: Status{Enabled: true}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := &Loader{Enabled: filepath.Join(dir, "enabled"), Profiles: filepath.Join(dir, "profiles"), Parser: filepath.Join(dir, "none")}
			if tc.enabled != "" {
				os.WriteFile(l.Enabled, []byte(tc.enabled), 0o644)
			}
			os.WriteFile(l.Profiles, []byte(tc.profiles), 0o644)
			if tc.parser >= 0 {
				l.Parser = fakeParser(t, dir, tc.parser)
			}
			got, err := l.EnsureDefault(context.Background(), tc.profile)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && tc.want.Reason == "" {
				tc.want.Reason = got.Reason // the error's text, checked below
				if tc.loads && !strings.Contains(got.Reason, "parser says no") {
					t.Errorf("reason %q lacks the parser's output", got.Reason)
				}
			}
			if got != tc.want {
				t.Errorf("status = %+v, want %+v", got, tc.want)
			}
			args, _ := os.ReadFile(filepath.Join(dir, "args"))
			if loaded := len(args) > 0; loaded != tc.loads {
				t.Fatalf("parser ran: %v, want %v", loaded, tc.loads)
			}
			if tc.loads {
				if strings.TrimSpace(string(args)) != "-Kr" {
					t.Errorf("parser args %q", args)
				}
				if p, _ := os.ReadFile(filepath.Join(dir, "policy")); !bytes.Contains(p, []byte("profile "+tc.profile+" ")) {
					t.Errorf("parser got policy %q", p)
				}
			}
		})
	}
}
