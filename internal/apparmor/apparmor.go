// Package apparmor loads berthd's default AppArmor profile, the one
// containers get when the CRI asks for the runtime default (or says
// nothing), as containerd and CRI-O each load their own. runc applies a
// profile by name; the profile has to be in the kernel first, and only
// apparmor_parser compiles one, so this package writes the policy text and
// runs the parser once at start.
package apparmor

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// DefaultProfile is the profile name of the embedded default ("apparmor_default_profile").
const DefaultProfile = "berth-default"

//go:embed default.profile.tmpl
var defaultTemplate string

var profileTmpl = template.Must(template.New("profile").Parse(defaultTemplate))

// validName is what a profile name may be here: it goes into the policy
// text and into runc's /proc/self/attr/apparmor/exec write unquoted.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidName says whether name can be the default profile's name.
func ValidName(name string) bool { return validName.MatchString(name) }

// Status is what verbose Status reports: whether AppArmor confines
// containers here, and with which default.
type Status struct {
	Enabled bool `json:"enabled"`
	// DefaultProfile is the profile of RuntimeDefault containers, "" when
	// they run unconfined (AppArmor off, no profile configured, or loading
	// it failed: Reason says which).
	DefaultProfile string `json:"defaultProfile"`
	Reason         string `json:"reason,omitempty"`
}

// Loader checks and loads profiles; the paths are fields so tests can point
// them elsewhere.
type Loader struct {
	// Enabled is the kernel's module parameter ("Y" when AppArmor is on).
	Enabled string
	// Profiles lists the loaded profiles, one "name (mode)" per line.
	Profiles string
	// Parser is apparmor_parser, looked up in PATH when it has no slash.
	Parser string
}

// NewLoader is the loader of the running kernel.
func NewLoader() *Loader {
	return &Loader{
		Enabled:  "/sys/module/apparmor/parameters/enabled",
		Profiles: "/sys/kernel/security/apparmor/profiles",
		Parser:   "apparmor_parser",
	}
}

// ErrNoParser: AppArmor is on but apparmor_parser is not installed.
var ErrNoParser = errors.New("apparmor_parser not found (Debian/Ubuntu package apparmor)")

// HostEnabled says whether the kernel has AppArmor on.
func (l *Loader) HostEnabled() bool {
	b, err := os.ReadFile(l.Enabled)
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// Loaded says whether a profile of that name is in the kernel.
func (l *Loader) Loaded(name string) (bool, error) {
	f, err := os.Open(l.Profiles)
	if err != nil {
		return false, fmt.Errorf("apparmor: list profiles: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "name (enforce)"; a name may itself contain spaces, the mode not.
		line := sc.Text()
		if i := strings.LastIndex(line, " ("); i >= 0 && line[:i] == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// EnsureDefault makes the default profile named name available: it keeps
// one already loaded (an operator's own policy of that name wins, and a
// restart of berthd does not reload it), else compiles and loads the
// embedded policy. It returns the status to report.
func (l *Loader) EnsureDefault(ctx context.Context, name string) (Status, error) {
	st := Status{Enabled: l.HostEnabled()}
	switch {
	case !st.Enabled:
		st.Reason = "AppArmor is not enabled in this kernel"
		return st, nil
	case name == "":
		st.Reason = "apparmor_default_profile is empty"
		return st, nil
	case !ValidName(name):
		return st, fmt.Errorf("apparmor: profile name %q is not valid", name)
	}
	if ok, err := l.Loaded(name); err != nil {
		st.Reason = err.Error()
		return st, err
	} else if ok {
		st.DefaultProfile = name
		return st, nil
	}
	if err := l.load(ctx, name); err != nil {
		st.Reason = err.Error()
		return st, err
	}
	st.DefaultProfile = name
	return st, nil
}

// Policy is the embedded default policy under name.
func Policy(name string) ([]byte, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("apparmor: profile name %q is not valid", name)
	}
	var b bytes.Buffer
	if err := profileTmpl.Execute(&b, struct{ Name string }{name}); err != nil {
		return nil, fmt.Errorf("apparmor: policy: %w", err)
	}
	return b.Bytes(), nil
}

// load compiles the policy and loads it into the kernel, replacing a
// profile of that name. -K: no binary cache, which would go stale when
// berthd's policy changes.
func (l *Loader) load(ctx context.Context, name string) error {
	parser, err := exec.LookPath(l.Parser)
	if err != nil {
		return ErrNoParser
	}
	policy, err := Policy(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, parser, "-Kr")
	cmd.Stdin = bytes.NewReader(policy)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apparmor: %s -Kr: %w: %s", parser, err, bytes.TrimSpace(out))
	}
	return nil
}
