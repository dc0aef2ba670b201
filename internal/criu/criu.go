// Package criu finds the CRIU binary checkpoint and restore use and checks
// at start that it is new enough for this kernel.
package criu

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Info is what the probe at start found; it is reported in verbose Status.
type Info struct {
	// Path is the binary (the configured path, or "criu" found on PATH).
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	// MinVersion is what this kernel needs.
	MinVersion string `json:"minVersion"`
	// Error says why checkpoint/restore cannot be used; empty when it can.
	Error string `json:"error,omitempty"`
}

// Usable returns nil, or an error wrapping errdefs.ErrUnimplemented that
// says why checkpoint and restore are not available.
func (i Info) Usable() error {
	if i.Error != "" {
		return fmt.Errorf("checkpoint/restore is not available: %s: %w", i.Error, errdefs.ErrUnimplemented)
	}
	return nil
}

// MinVersion is the oldest CRIU that works on a kernel of release rel:
// from Linux 6.13 on, the vDSO's data pages are split in two mappings
// ([vvar] and [vvar_vclock]), which CRIU before 4.1 cannot parse: every
// operation fails ("Unexpected rt vDSO area bounds"). Elsewhere 3.16, the
// oldest with what libcontainer asks for (external pid namespaces, the
// LSM options).
func MinVersion(rel string) [3]int {
	maj, min := kernelVersion(rel)
	if maj > 6 || (maj == 6 && min >= 13) {
		return [3]int{4, 1, 0}
	}
	return [3]int{3, 16, 0}
}

// Probe finds the binary (path; "" looks "criu" up on PATH) and reads its
// version. It never fails: what is wrong is in Info.Error.
func Probe(ctx context.Context, path string) Info {
	var uts unix.Utsname
	unix.Uname(&uts)
	need := MinVersion(unix.ByteSliceToString(uts.Release[:]))
	info := Info{MinVersion: format(need)}
	if path == "" {
		p, err := exec.LookPath("criu")
		if err != nil {
			info.Error = "no criu on PATH (hack/install-criu.sh installs one; or set criu_path)"
			return info
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.Path = abs
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, abs, "--version").Output()
	if err != nil {
		info.Error = fmt.Sprintf("%s --version: %v", abs, err)
		return info
	}
	v, ok := parseVersion(out)
	if !ok {
		info.Error = fmt.Sprintf("%s --version printed no version: %q", abs, out)
		return info
	}
	info.Version = format(v)
	if less(v, need) {
		info.Error = fmt.Sprintf("CRIU %s at %s is too old: this kernel (%s) needs %s or newer", info.Version, abs, unix.ByteSliceToString(uts.Release[:]), info.MinVersion)
	}
	return info
}

// parseVersion reads "Version: X.Y[.Z]" from criu --version.
func parseVersion(out []byte) ([3]int, bool) {
	var v [3]int
	for _, line := range bytes.Split(out, []byte("\n")) {
		s, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "Version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
		if len(parts) < 2 {
			return v, false
		}
		for i, p := range parts {
			n, err := strconv.Atoi(leadingDigits(p))
			if err != nil {
				return v, false
			}
			v[i] = n
		}
		return v, true
	}
	return v, false
}

func kernelVersion(rel string) (int, int) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	maj, _ := strconv.Atoi(parts[0])
	min, _ := strconv.Atoi(leadingDigits(parts[1]))
	return maj, min
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func format(v [3]int) string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// leadingDigits is s up to its first non-digit ("2-rc1" -> "2").
func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
