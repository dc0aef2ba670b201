package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/proctree"
)

// killOrphanCNI kills the CNI plugin processes still at work for sandbox
// id and waits until they are gone. A berthd killed during CNI ADD leaves
// its plugins running (they are processes, not its threads): one that
// finished its ADD after recovery's DEL would keep the pod's IP allocated
// for ever. Plugins, and the IPAM plugins they delegate to, carry the
// pod's CNI_CONTAINERID in their environment.
func killOrphanCNI(id string) error {
	want := []byte("CNI_CONTAINERID=" + id)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesWithEnv(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CNI plugins %v of pod %s do not die", pids, id)
		}
		for _, pid := range pids {
			// The pid was read from /proc a moment ago: signalled only if
			// it is still a plugin of this pod (proctree.SignalIf).
			err := proctree.SignalIf(pid, unix.SIGKILL, func() bool { return hasEnv(pid, want) })
			if err != nil && !errors.Is(err, proctree.ErrNotSame) {
				return fmt.Errorf("kill CNI plugin of pod %s: %w", id, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesWithEnv lists the live processes whose environment holds the
// exact entry env.
func processesWithEnv(env []byte) []int {
	var pids []int
	paths, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range paths {
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
		if hasEnv(pid, env) && !zombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hasEnv reports whether pid's environment holds the exact entry env.
func hasEnv(pid int, env []byte) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false // gone, or a kernel thread
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(e, env) {
			return true
		}
	}
	return false
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] == 'Z'
}
