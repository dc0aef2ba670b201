package testsupport

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// recorder is a testing.TB that notes a failure or a skip instead of
// ending the test.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Skip(...any)           { r.skipped = true }

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		env                string
		ok                 bool
		wantFail, wantSkip bool
	}{
		{env: "", ok: true},
		{env: "1", ok: true},
		{env: "", ok: false, wantSkip: true},
		{env: "0", ok: false, wantSkip: true},
		{env: "1", ok: false, wantFail: true},
	} {
		t.Setenv(RequireAllEnv, tc.env)
		r := &recorder{TB: t}
		Require(r, tc.ok, "needs %s", "root")
		if r.failed != tc.wantFail || r.skipped != tc.wantSkip {
			t.Errorf("%s=%q ok=%v: failed %v skipped %v, want %v %v", RequireAllEnv, tc.env, tc.ok, r.failed, r.skipped, tc.wantFail, tc.wantSkip)
		}
	}
}

// RequireMain exits 1 under BERTH_REQUIRE_ALL=1 and lets TestMain return
// (exit 0) otherwise; run in a child, as a TestMain would.
func TestRequireMain(t *testing.T) {
	if os.Getenv("BERTH_TEST_REQUIRE_MAIN") != "" {
		if !RequireMain(false, "needs %s", "root") {
			os.Exit(0)
		}
		os.Exit(3)
	}
	for env, want := range map[string]int{"": 0, "1": 1} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireMain$")
		cmd.Env = append(os.Environ(), "BERTH_TEST_REQUIRE_MAIN=1", RequireAllEnv+"="+env)
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != want || !strings.Contains(string(out), "needs root") {
			t.Errorf("%s=%q: exit %d, want %d; output %q", RequireAllEnv, env, got, want, out)
		}
	}
}

// skipCall is a test or benchmark skipping by hand.
var skipCall = regexp.MustCompile(`\b[tb]\.Skip(f|Now)?\(`)

// Every plain t.Skip in the tree says, in a "// skip: " comment on the line
// above, why it is not a missing capability (platform, opt-in, chance...):
// one that is must go through Require, so that CI cannot lose it unseen.
func TestSkipsAreNotCapabilities(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == filepath.Join(root, "internal", "testsupport") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines := strings.Split(string(data), "\n")
		for i, line := range lines {
			if skipCall.MatchString(line) && (i == 0 || !strings.Contains(lines[i-1], "// skip: ")) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d: a plain skip: use testsupport.Require for a missing capability, or say why it is none in a \"// skip: \" comment above", rel, i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
