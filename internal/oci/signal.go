package oci

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// sigRTMIN and sigRTMAX are the real-time signal bounds as userspace (glibc)
// numbers them, which is what images write ("RTMIN+3" = 37).
const (
	sigRTMIN = 34
	sigRTMAX = 64
)

var signalNames = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "BUS": syscall.SIGBUS,
	"CHLD": syscall.SIGCHLD, "CLD": syscall.SIGCHLD, "CONT": syscall.SIGCONT,
	"FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP, "ILL": syscall.SIGILL,
	"INT": syscall.SIGINT, "IO": syscall.SIGIO, "IOT": syscall.SIGABRT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "POLL": syscall.SIGIO,
	"PROF": syscall.SIGPROF, "PWR": syscall.SIGPWR, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "STKFLT": syscall.SIGSTKFLT, "STOP": syscall.SIGSTOP,
	"SYS": syscall.SIGSYS, "TERM": syscall.SIGTERM, "TRAP": syscall.SIGTRAP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU,
	"URG": syscall.SIGURG, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"VTALRM": syscall.SIGVTALRM, "WINCH": syscall.SIGWINCH,
	"XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ,
	"RTMIN": sigRTMIN, "RTMAX": sigRTMAX,
}

// StopSignal is the signal StopContainer sends first: the CRI stop_signal
// (CRI 1.33) if set, else the image's StopSignal, else SIGTERM.
func StopSignal(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) (syscall.Signal, error) {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		name, ok := runtimeapi.Signal_name[int32(s)]
		if !ok {
			return 0, fmt.Errorf("stop_signal %d is unknown: %w", s, errdefs.ErrInvalidArgument)
		}
		// SIGNAL_SIGRTMINPLUS3 -> RTMIN+3, SIGNAL_SIGRTMAXMINUS2 -> RTMAX-2
		name = strings.TrimPrefix(name, "SIGNAL_SIG")
		name = strings.Replace(name, "PLUS", "+", 1)
		name = strings.Replace(name, "MINUS", "-", 1)
		sig, err := ParseSignal(name)
		if err != nil {
			return 0, fmt.Errorf("stop_signal: %w", err)
		}
		return sig, nil
	}
	if img.StopSignal != "" {
		sig, err := ParseSignal(img.StopSignal)
		if err != nil {
			return 0, fmt.Errorf("image StopSignal: %w", err)
		}
		return sig, nil
	}
	return syscall.SIGTERM, nil
}

// ParseSignal reads "SIGQUIT", "QUIT", "3", "RTMIN+3" or "SIGRTMAX-2".
func ParseSignal(s string) (syscall.Signal, error) {
	bad := fmt.Errorf("signal %q is not a signal name or number: %w", s, errdefs.ErrInvalidArgument)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigRTMAX {
			return 0, bad
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	base, off, sign := name, 0, 0
	if i := strings.IndexAny(name, "+-"); i > 0 {
		n, err := strconv.Atoi(name[i+1:])
		if err != nil || n < 0 {
			return 0, bad
		}
		base, off, sign = name[:i], n, 1
		if name[i] == '-' {
			sign = -1
		}
	}
	sig, ok := signalNames[base]
	if !ok {
		return 0, bad
	}
	if sign != 0 {
		if base != "RTMIN" && base != "RTMAX" {
			return 0, bad
		}
		sig += syscall.Signal(sign * off)
		if sig < sigRTMIN || sig > sigRTMAX {
			return 0, bad
		}
	}
	return sig, nil
}
