// Package v1 is the wire contract between berthd and the berth supervisor.
//
// Transport: a unix stream socket at <stateDir>/supervisor/supervisor.sock.
// Each call is one connection: the client writes one Request as a JSON line,
// the server answers one Response as a JSON line and closes. One connection
// per call keeps both sides free of multiplexing, lets a blocking Wait simply
// hold its own connection, and costs ~20µs on loopback.
//
// Versioning: every Request carries the client's protocol Version
// ("major.minor"). The server refuses a different major with
// CodeIncompatibleVersion; a newer minor may only add optional fields and
// operations, so both sides ignore unknown JSON fields.
//
// OpAttach (1.1) is the one call whose connection outlives its Response:
// after a successful Response the server sends the container's live output
// as frames (see FrameHeaderSize) and closes the connection when the output
// ends. For a container without a terminal, stdin does not travel on it: the
// client writes State.StdinPath. For a terminal container (1.2) the client
// sends frames the other way on the same connection: stdin for the terminal
// and resize events (see FrameStdin).
//
// OpExec (1.3) also outlives its first Response: the request carries the
// exec'd process's stdio as open files (SCM_RIGHTS on the request's first
// byte), the first Response says the process started (with a pidfd for it,
// as SCM_RIGHTS on that Response's first byte), and a second Response
// carries its exit once it ended. The client closing its side of the
// connection (or going away) kills the exec'd process tree.
//
// OpCreateWhenReady (1.4) is OpCreate in two steps, for a bundle the client
// is still making (its rootfs, its config.json): the server makes the
// container's directory, record, stdio and log, then reads one Proceed line
// from the connection (within ProceedTimeout); only then does it read the
// bundle's spec and have the runtime create the init. Proceed{OK: true} continues as OpCreate and gets its Response;
// anything else undoes the preparation (the container is unknown again)
// and the Response is an error. The client's preparation and the server's
// overlap. A server older than 1.4 answers CodeUnimplemented at once, with
// nothing done.
//
// OpExecCommand (1.5) is OpExec for a command: the request carries the
// command, the terminal flag and any overrides, and the supervisor builds
// the process from the container's own (the bundle's config.json it holds),
// so a probe's request stays small whatever the container's environment
// and berthd decodes no spec for it. A server older than 1.5 answers
// CodeUnimplemented, with nothing done; the client then sends OpExec.
//
// OpCheckpoint (1.6) has CRIU dump a running libcontainer container's
// process tree into CheckpointRequest.ImagesDir, leaving it running. OpRestore
// (1.6) is OpCreate and OpStart in one for a container restored from such
// a dump (CreateRequest.Restore): the supervisor makes its directory, record,
// stdio and log as for a create, then has CRIU restore the processes, whose
// stdout and stderr become the new container's FIFOs; the Response is the
// running container's State. OpPause and OpResume (1.6) freeze and thaw a
// running libcontainer container's processes (its cgroup freezer), so that
// several containers can be dumped as of one instant (CRIU leaves a frozen
// container frozen). A server older than 1.6 answers CodeUnimplemented to
// all four, with nothing done.
//
// Request ids (1.7): a Request may carry the id berthd gave the CRI request
// it works for (RequestID); the supervisor logs every line of that call
// with it (field request_id), so one grep finds a request's lines in both
// logs. It is optional and only logged: a server before 1.7 ignores it, and
// a call without one (berthd's own background work) is logged without it.
//
// History: 1.1 added OpAttach; 1.2 added terminal containers
// (CreateRequest.Terminal, State.Terminal) and the client-to-server attach
// frames FrameStdin, FrameResize and FrameStdinEnd; 1.3 added OpExec; 1.4
// added OpCreateWhenReady; 1.5 added OpExecCommand (and ExecRequest's
// command fields; Process became optional, for OpExec only); 1.6 added
// OpCheckpoint, OpRestore (CreateRequest.Restore), OpPause and OpResume;
// 1.7 added Request.RequestID.
package v1

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Version is the protocol version spoken by this package.
const Version = "1.7"

// Major returns the major number of a "major.minor" version, or -1.
func Major(v string) int {
	s, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// Op names an operation.
type Op string

const (
	OpVersion         Op = "version"
	OpCreate          Op = "create"
	OpStart           Op = "start"
	OpKill            Op = "kill"
	OpState           Op = "state"
	OpList            Op = "list"
	OpDelete          Op = "delete"
	OpWait            Op = "wait"
	OpReopenLog       Op = "reopen_log"
	OpCloseStdin      Op = "close_stdin"
	OpUpdateResources Op = "update_resources"
	OpUpgrade         Op = "upgrade"
	OpStats           Op = "stats"
	// OpAttach streams a container's live output (since 1.1).
	OpAttach Op = "attach"
	// OpExec runs a process in a running container (since 1.3).
	OpExec Op = "exec"
	// OpCreateWhenReady is OpCreate gated by a Proceed line (since 1.4).
	OpCreateWhenReady Op = "create_when_ready"
	// OpExecCommand is OpExec with the process built by the supervisor
	// (since 1.5).
	OpExecCommand Op = "exec_command"
	// OpCheckpoint dumps a running container with CRIU (since 1.6).
	OpCheckpoint Op = "checkpoint"
	// OpRestore creates and starts a container from a dump (since 1.6).
	OpRestore Op = "restore"
	// OpPause and OpResume freeze and thaw a container (since 1.6).
	OpPause  Op = "pause"
	OpResume Op = "resume"
)

// Proceed is the line a client sends on an OpCreateWhenReady connection once
// the bundle's rootfs is ready (OK), or to give the create up (Reason).
type Proceed struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// ProceedTimeout bounds the server's wait for Proceed: a client that neither
// proceeds nor hangs up must not hold the container (or an upgrade) forever.
const ProceedTimeout = 30 * time.Second

// Attach frames: after OpAttach's Response, each chunk of output the
// supervisor reads from the container is sent as a FrameHeaderSize header
// (one stream byte, then the payload length as a big-endian uint32) and the
// payload. The CRI log receives the same bytes; an attacher that cannot keep
// up is disconnected rather than slowing the container or its log. A FrameEnd
// frame (empty) says the output ended; a connection closed without one was
// dropped (too slow, or the supervisor went away).
const (
	FrameHeaderSize = 5
	FrameEnd        = 0
	FrameStdout     = 1
	FrameStderr     = 2
	// MaxFramePayload bounds one frame (the supervisor's read buffer).
	MaxFramePayload = 64 * 1024
)

// Attach input frames (1.2): on an attach to a terminal container, the client
// may send frames with the same header to the supervisor, which handles them
// in the order sent:
//   - FrameStdin: the payload is written to the terminal (the pty master), as
//     if typed. Ignored when the container was created without Stdin or its
//     stdin was closed (stdin_once). The terminal echoes it, so the output
//     (and the log) shows it, as on any terminal.
//   - FrameResize: the payload is ResizePayloadSize bytes, rows then columns,
//     big-endian uint16 each; the terminal's window size is set to it
//     (TIOCSWINSZ) and the container's foreground process group gets
//     SIGWINCH. A 0x0 size is ignored.
//   - FrameStdinEnd (empty): this attacher's stdin ended. For a container
//     created with StdinOnce, stdin is then closed for good, as CloseStdin
//     does: the terminal gets its end-of-file character (VEOF, normally ^D),
//     which a reader at the start of a line reads as end of input, and no
//     later stdin is accepted. The terminal is not hung up, so output keeps
//     reaching the log. Being in-band, it cannot overtake stdin sent before
//     it. Without StdinOnce it does nothing.
//
// A frame of another kind, or a payload over MaxFramePayload, ends the
// attach. Input frames on an attach to a container without a terminal are
// ignored (its stdin is the FIFO at State.StdinPath). Frames still unsent
// when the connection closes are lost; closing the connection is not
// FrameStdinEnd.
const (
	FrameStdin        = 3
	FrameResize       = 4
	FrameStdinEnd     = 5
	ResizePayloadSize = 4
)

// Request is one call. Only the field matching Op is read.
type Request struct {
	Version string `json:"version"`
	Op      Op     `json:"op"`
	// ID names the container for every per-container operation.
	ID string `json:"id,omitempty"`
	// RequestID (1.7, optional) is the id of the CRI request this call
	// works for; the supervisor only logs it.
	RequestID string `json:"request_id,omitempty"`

	Create *CreateRequest        `json:"create,omitempty"`
	Kill   *KillRequest          `json:"kill,omitempty"`
	Update *specs.LinuxResources `json:"update,omitempty"`
	Exec   *ExecRequest          `json:"exec,omitempty"`
	// Checkpoint is OpCheckpoint's (1.6).
	Checkpoint *CheckpointRequest `json:"checkpoint,omitempty"`
}

// DecodeRequest parses a request line and checks that the client speaks
// this protocol's major version; the error is the client's answer.
func DecodeRequest(line []byte) (Request, *Error) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return req, Errorf(CodeInvalidArgument, "decode request: %v", err)
	}
	if Major(req.Version) != Major(Version) {
		return req, Errorf(CodeIncompatibleVersion, "client speaks %q, supervisor %q", req.Version, Version)
	}
	return req, nil
}

// CheckpointRequest dumps a running container of kind libcontainer with
// CRIU, leaving it running (what kubelet's forensic checkpoint asks).
type CheckpointRequest struct {
	// ImagesDir receives CRIU's images (and libcontainer's
	// descriptors.json); it is created if missing.
	ImagesDir string `json:"images_dir"`
	// WorkDir receives CRIU's dump.log (and stats); created if missing.
	WorkDir string `json:"work_dir"`
	// CriuPath is the criu binary to run (libcontainer runs "criu" from
	// PATH: the supervisor puts this one first).
	CriuPath string `json:"criu_path"`
}

// RestoreRequest, in CreateRequest.Restore (OpRestore, 1.6), names the dump
// to restore the container's processes from. The bundle's rootfs must hold
// the dumped container's files (its image plus its changes).
type RestoreRequest struct {
	// ImagesDir holds the images an OpCheckpoint wrote.
	ImagesDir string `json:"images_dir"`
	// WorkDir receives CRIU's restore.log.
	WorkDir  string `json:"work_dir"`
	CriuPath string `json:"criu_path"`
}

// ExecRequest runs a process in a running container of kind libcontainer
// (execs into oci-kind containers go through the runtime binary, not here).
// The supervisor is the process's parent: it reaps it and reports the exit
// on the same connection, so no exit is lost to a subreaper race, and the
// process needs no copy of berthd's (much larger) binary as its init.
type ExecRequest struct {
	// Process (OpExec) is the exec'd process: args, env, cwd, user,
	// capabilities, no_new_privileges, rlimits and labels are applied as
	// given (the container's own process spec with the exec's args,
	// normally). Terminal asks for a pty, which the process allocates
	// inside the container and sends as its master to the console socket.
	// Required by OpExec, refused by OpExecCommand.
	Process *specs.Process `json:"process,omitempty"`

	// The command fields (OpExecCommand, 1.5): the process is the
	// container's own (its bundle's process: user, env, cwd, capabilities,
	// no_new_privileges, rlimits, labels) with Args as its command,
	// Terminal and ConsoleSize as given, and the overrides below applied.
	Args        []string   `json:"args,omitempty"`
	Terminal    bool       `json:"terminal,omitempty"`
	ConsoleSize *specs.Box `json:"console_size,omitempty"`
	// Env entries (KEY=value) replace the container's entry of the same
	// key, or are added after its entries.
	Env []string `json:"env,omitempty"`
	// User, when set, replaces the container's process user.
	User *specs.User `json:"user,omitempty"`
	// Cwd, when set, replaces the container's working directory ("/" when
	// neither says).
	Cwd string `json:"cwd,omitempty"`

	// Files says which files travel with the request, in this order:
	// without Terminal, stdin, stdout and stderr (each when set; a missing
	// one is /dev/null); with Terminal, exactly one: the console socket
	// (a unix socket the pty master is sent to).
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
}

// ExecStarted is the first answer to OpExec.
type ExecStarted struct {
	Pid int `json:"pid"`
}

// ExecExit is the second answer to OpExec.
type ExecExit struct {
	// ExitCode is the exit code, or 128+signal for a signal death.
	ExitCode int `json:"exit_code"`
}

// RuntimeKind selects how the supervisor runs a container.
type RuntimeKind string

const (
	// RuntimeLibcontainer runs the container in-process with runc's
	// libcontainer: the container init is the supervisor's child.
	RuntimeLibcontainer RuntimeKind = "libcontainer"
	// RuntimeOCI execs a runc-compatible binary (runc, crun, runsc…); the
	// supervisor is a child subreaper and adopts the container init.
	RuntimeOCI RuntimeKind = "oci"
)

// CreateRequest creates a container whose init waits for Start.
type CreateRequest struct {
	// Bundle is a directory holding config.json (an OCI runtime spec whose
	// root.path is absolute and whose linux.cgroupsPath is absolute).
	Bundle string      `json:"bundle"`
	Kind   RuntimeKind `json:"kind"`
	// RuntimePath is the OCI runtime binary (kind oci only).
	RuntimePath string `json:"runtime_path,omitempty"`
	// RuntimeRoot is the runtime's state root (--root for oci, the
	// libcontainer root for libcontainer). Empty: a default under the
	// supervisor's state dir.
	RuntimeRoot string `json:"runtime_root,omitempty"`
	// LogPath is the CRI log file; empty discards the output.
	LogPath string `json:"log_path,omitempty"`
	Stdin   bool   `json:"stdin,omitempty"`
	// StdinOnce: berthd calls CloseStdin after the first attach detaches
	// (for a terminal container, the attacher sends FrameStdinEnd).
	StdinOnce bool `json:"stdin_once,omitempty"`
	// Terminal (1.2) gives the container a pty, as CRI's tty: the init's
	// stdin, stdout and stderr are its slave; the supervisor holds the
	// master, logs what it reads as stdout (kubelet's convention), and takes
	// stdin and resizes through OpAttach frames. It must match the bundle's
	// process.terminal (CodeInvalidArgument otherwise). The initial size is
	// the spec's process.consoleSize.
	//
	// A terminal does not survive the supervisor being killed (kill -9):
	// the master dies with the process, so the container's terminal is hung
	// up (its session gets SIGHUP, which a namespace init without a handler
	// does not receive; later reads and writes fail with EIO); output after
	// that is lost, and the exit is reported as for any container the
	// restarted supervisor re-adopts (255/Unknown). An in-place upgrade
	// hands the master over and loses nothing.
	Terminal bool `json:"terminal,omitempty"`
	// MaxLogLineSize splits longer lines into partial (P) records; 0 means
	// the default of 16 KiB.
	MaxLogLineSize int `json:"max_log_line_size,omitempty"`
	// SpecWritten (1.4), for OpCreateWhenReady: the bundle's config.json is
	// complete already (only its rootfs is not), so the server reads it
	// while it prepares rather than after Proceed.
	SpecWritten bool `json:"spec_written,omitempty"`
	// Restore (OpRestore only, 1.6): the processes come from a CRIU dump
	// instead of the bundle's process; the container is running once the
	// call returns.
	Restore *RestoreRequest `json:"restore,omitempty"`
}

// KillRequest sends Signal (a number) to the container init, or to every
// process of the container when All is set.
type KillRequest struct {
	Signal int  `json:"signal"`
	All    bool `json:"all,omitempty"`
}

// Status is a container's lifecycle state:
// created -> running -> stopped, created -> stopped, and unknown while the
// supervisor cannot tell (never persisted).
type Status string

const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
	StatusUnknown Status = "unknown"
)

// Exit reasons, as kubelet shows them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	// ReasonUnknown: the exit happened while no supervisor could observe it
	// (the supervisor was down, or the container's parent changed); the
	// exit code is then 255, never 0.
	ReasonUnknown = "Unknown"
)

// ExitStatus is what the supervisor records (durably, before publishing) when
// a container init ends.
type ExitStatus struct {
	// ExitCode is the exit code, or 128+signal for a signal death.
	ExitCode int32 `json:"exit_code"`
	// Signal is the signal number that killed the init, 0 otherwise.
	Signal     int    `json:"signal,omitempty"`
	FinishedAt int64  `json:"finished_at"` // unix nanoseconds
	OOMKilled  bool   `json:"oom_killed,omitempty"`
	Reason     string `json:"reason"`
}

// State describes one container.
type State struct {
	ID        string      `json:"id"`
	Status    Status      `json:"status"`
	Kind      RuntimeKind `json:"kind"`
	Pid       int         `json:"pid,omitempty"`
	CreatedAt int64       `json:"created_at,omitempty"` // unix nanoseconds
	StartedAt int64       `json:"started_at,omitempty"`
	// Exit is set once Status is stopped.
	Exit    *ExitStatus `json:"exit,omitempty"`
	LogPath string      `json:"log_path,omitempty"`
	// StdinPath is a FIFO an attach writes the container's stdin to (set
	// when the container was created with Stdin and without Terminal).
	StdinPath string `json:"stdin_path,omitempty"`
	// Terminal: the container has a pty (1.2); an attach sends its stdin and
	// resizes as frames (FrameStdin, FrameResize).
	Terminal bool `json:"terminal,omitempty"`
	// StdinOpen: the container was created with Stdin and its stdin was not
	// closed (stdin_once) yet (1.2).
	StdinOpen bool `json:"stdin_open,omitempty"`
	// LogError is the last error writing or reopening the log, if any.
	LogError string `json:"log_error,omitempty"`
}

// VersionInfo answers OpVersion.
type VersionInfo struct {
	Protocol string `json:"protocol"`
	Binary   string `json:"binary"` // build version of the supervisor
	Pid      int    `json:"pid"`
	// BootID changes with every start and every in-place upgrade.
	BootID string `json:"boot_id"`
	// File identifies the executable file the supervisor was started from
	// ("<dev>:<inode>"): it runs from a sealed in-memory copy, so its
	// /proc/<pid>/exe never names that file. berthd compares this with the
	// file on disk to tell whether an upgrade is due. Empty from
	// supervisors older than protocol 1.5.
	File string `json:"file,omitempty"`
	// KeeperPid is the keeper above the supervisor (the process that
	// reaps and records the exits of containers a dead supervisor left,
	// and starts the next one); 0 when the supervisor runs without one.
	// Stopping berth's supervisor for good is a SIGTERM to the keeper.
	KeeperPid int `json:"keeper_pid,omitempty"`
}

// Stats answers OpStats (health and leak checks).
type Stats struct {
	Containers int `json:"containers"`
	Goroutines int `json:"goroutines"`
	OpenFDs    int `json:"open_fds"`
}

// Response is the answer to one Request. Error is nil on success.
type Response struct {
	Error   *Error       `json:"error,omitempty"`
	Version *VersionInfo `json:"version,omitempty"`
	State   *State       `json:"state,omitempty"`
	List    []State      `json:"list,omitempty"`
	Stats   *Stats       `json:"stats,omitempty"`
	// ExecStarted and ExecExit answer OpExec (see ExecRequest).
	ExecStarted *ExecStarted `json:"exec_started,omitempty"`
	ExecExit    *ExecExit    `json:"exec_exit,omitempty"`
	// Upgrading is the first of two answers to OpUpgrade: the server is
	// about to exec. The connection then closes on success (EOF), or a
	// second Response carries the exec error.
	Upgrading bool `json:"upgrading,omitempty"`
}

// Code classifies an Error; the client maps codes to internal/errdefs.
type Code string

const (
	CodeInvalidArgument     Code = "invalid_argument"
	CodeNotFound            Code = "not_found"
	CodeAlreadyExists       Code = "already_exists"
	CodeFailedPrecondition  Code = "failed_precondition"
	CodeUnavailable         Code = "unavailable"
	CodeUnimplemented       Code = "unimplemented"
	CodeIncompatibleVersion Code = "incompatible_version"
	CodeInternal            Code = "internal"
)

// Error is a failed call.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FileID is the identity VersionInfo.File carries for the file at path,
// "<dev>:<inode>"; "" when it cannot be read.
func FileID(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
