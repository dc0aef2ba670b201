package exec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// startError classifies a runtime's start failure. The failure of the exec
// inside the container comes back from the container's init as text (it
// crossed a process boundary), so the command's own failures are recognised
// by their message: Go's exec.LookPath wording, which runc and crun share.
func startError(id string, err error) error {
	if errors.Is(err, errdefs.ErrFailedPrecondition) || errors.Is(err, errdefs.ErrNotFound) ||
		errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, errdefs.ErrInvalidArgument) {
		return fmt.Errorf("exec in container %s: %w", id, err)
	}
	if n := classifyMessage(err.Error()); n != nil {
		return n
	}
	return fmt.Errorf("exec in container %s: %w", id, err)
}

// classifyMessage returns the notRunnable a runtime message describes, or
// nil. Exit codes follow the shell: 127 not found, 126 found but not
// executable.
func classifyMessage(msg string) *notRunnable {
	// Keep the part from `exec: "name"` on: that is containerd's wording
	// ("exec: \"foo\": executable file not found in $PATH").
	short := msg
	if i := strings.Index(msg, `exec: "`); i >= 0 {
		short = msg[i:]
	}
	short = strings.TrimSpace(short)
	switch {
	case strings.Contains(msg, "executable file not found"),
		strings.Contains(msg, "no such file or directory") && strings.Contains(msg, `exec: "`):
		return &notRunnable{code: 127, msg: short}
	case strings.Contains(msg, `exec: "`) && (strings.Contains(msg, "permission denied") ||
		strings.Contains(msg, "is a directory") || strings.Contains(msg, "exec format error")):
		return &notRunnable{code: 126, msg: short}
	}
	return nil
}
