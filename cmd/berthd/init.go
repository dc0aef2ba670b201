package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// The devices cgroup manager and nsenter's C constructor must be linked
	// into any binary that starts or execs into containers with libcontainer.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init is libcontainer's re-exec hook: berthd execs processes into running
// containers (ExecSync, streaming exec) by re-running itself as "berthd init"
// inside their namespaces. It must run before anything else starts threads.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}
