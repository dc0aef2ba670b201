// Package supervisor is the berth supervisor: the one long-lived process per
// node that is the parent of every container init, owns the containers' stdio
// (turning it into CRI log files) and records every exit durably before
// anyone can learn of it. berthd talks to it through api/supervisor/v1 and
// the client in internal/supervisor/client.
//
// On disk, under <stateDir>/supervisor:
//
//	supervisor.sock          the protocol socket
//	supervisor.lock          flock held by the running supervisor (its pid)
//	containers/<id>/         one directory per container:
//	    container.json       the record (atomicfile): how to find it again
//	    exit.json            the exit, written before the exit is published
//	    stdout, stderr       named FIFOs the container writes its output to
//	    stdin                a FIFO for attach (when created with stdin)
//	                         (a terminal container has none of the three: its
//	                         pty master is held in memory, console.go)
//	upgrade.json             hand-over note of an in-place upgrade
//	keeper.lock              flock held by the keeper above the supervisor
//	exits/<pid>-<start>      exits the keeper recorded (internal/keeper)
//
// What survives what:
//   - berthd crashing or upgrading: everything; nothing here depends on it.
//   - Upgrade (execve in place, same PID): everything. Containers stay our
//     children, so their exits are exact; the listening socket, the lock and
//     terminal containers' pty masters are inherited by fd; log FIFOs are
//     reopened by path.
//   - kill -9 of the supervisor: containers without a terminal keep running
//     (see fifo.go for the SIGPIPE reasoning); a terminal container's
//     terminal is hung up, since its master dies with us: SIGHUP ends it
//     unless its init is a PID-namespace init, which keeps running with a
//     dead terminal (console.go). They are reparented to the keeper above us
//     (internal/keeper), which starts the next supervisor, records each of
//     their exits before reaping it and holds their FIFOs open. The restart
//     re-adopts them through pidfds, checked against pid reuse with the
//     process start time, and reads their exits from the keeper's records:
//     exact. Only where no keeper saw an exit (it was killed too) is it
//     reported as 255/"Unknown" with the time the loss was noticed.
//
// The binary must stay small: this package must not import grpc, cri-api,
// registry or CNI code (cmd/berth-supervisor/deps_test.go checks), which is
// why it speaks api/supervisor/v1 error codes instead of internal/errdefs.
package supervisor
