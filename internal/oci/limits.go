package oci

import (
	"fmt"

	"github.com/berth-cri/berth/internal/errdefs"
)

// The kernel's limits on what execve(2) takes. A command line or an
// environment past them passes create and start, then the container dies
// with exit 255 and "argument list too long" in its log, over and over
// under kubelet's restarts; refused at create instead, with the reason.
const (
	// maxArgStrlen is MAX_ARG_STRLEN (32 pages): the longest single
	// argument or "KEY=value" string, its NUL included.
	maxArgStrlen = 32 * 4096
	// maxArgTotal is the kernel's ceiling on argv plus envp (strings and
	// pointers), 3/4 of _STK_LIM, whatever the stack rlimit. With the
	// usual 8 MiB stack rlimit the real limit is 2 MiB; between the two,
	// the exec error shows in the container's log.
	maxArgTotal = 6 << 20
)

// checkExecSize refuses args and env that execve(2) would refuse whatever
// the container's rlimits.
func checkExecSize(args, env []string) error {
	total := 0
	for _, l := range []struct {
		field string
		v     []string
	}{{"command and args", args}, {"envs", env}} {
		for i, s := range l.v {
			if len(s)+1 > maxArgStrlen {
				return fmt.Errorf("%s: entry %d is %d bytes, longer than the kernel's limit of %d for one argument or variable: %w",
					l.field, i, len(s), maxArgStrlen-1, errdefs.ErrInvalidArgument)
			}
			total += len(s) + 1 + 8 // the string, its NUL and its pointer
		}
	}
	if total > maxArgTotal {
		return fmt.Errorf("command, args and envs take %d bytes, more than the kernel's limit of %d for a process: %w", total, maxArgTotal, errdefs.ErrInvalidArgument)
	}
	return nil
}

// MaxMetadataBytes is what the Kubernetes API server allows an object's
// annotations to take (keys plus values, TotalAnnotationSizeLimitB), held
// to labels as well. kubelet only passes on what the API server accepted,
// so a bigger map comes from another client; berthd keeps both maps in
// its records and in every List reply, where they would cost memory and
// disk many times over for each pod and container.
const MaxMetadataBytes = 256 << 10

// CheckMetadata refuses labels or annotations of one object (named by
// what, e.g. "pod sandbox config") that take more than MaxMetadataBytes.
func CheckMetadata(what string, labels, annotations map[string]string) error {
	for _, f := range []struct {
		field string
		m     map[string]string
	}{{"labels", labels}, {"annotations", annotations}} {
		n := 0
		for k, v := range f.m {
			n += len(k) + len(v)
		}
		if n > MaxMetadataBytes {
			return fmt.Errorf("%s: %s take %d bytes, more than the limit of %d (the Kubernetes API server's): %w",
				what, f.field, n, MaxMetadataBytes, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
