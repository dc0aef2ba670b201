package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/crilog"
)

// record is what a supervisor needs to find a container again after an
// upgrade or a restart; it is persisted as container.json on every change.
type record struct {
	ID          string         `json:"id"`
	Bundle      string         `json:"bundle"`
	Kind        v1.RuntimeKind `json:"kind"`
	RuntimePath string         `json:"runtime_path,omitempty"`
	RuntimeRoot string         `json:"runtime_root"`
	LogPath     string         `json:"log_path,omitempty"`
	Stdin       bool           `json:"stdin,omitempty"`
	StdinOnce   bool           `json:"stdin_once,omitempty"`
	// StdinClosed: CloseStdin was called; a restart must not hold it again.
	StdinClosed bool `json:"stdin_closed,omitempty"`
	// Terminal: the init's stdio is a pty whose master the supervisor holds
	// (console.go); there are no FIFOs.
	Terminal       bool `json:"terminal,omitempty"`
	MaxLogLineSize int  `json:"max_log_line_size,omitempty"`
	// Pid and PidStartTime (clock ticks since boot, /proc/<pid>/stat field
	// 22) identify the init; 0 until the runtime created it.
	Pid          int    `json:"pid,omitempty"`
	PidStartTime uint64 `json:"pid_start_time,omitempty"`
	// MemoryCgroup is the container's memory cgroup directory, read at exit
	// for the OOM kill counter.
	MemoryCgroup string `json:"memory_cgroup,omitempty"`
	CreatedAt    int64  `json:"created_at,omitempty"`
	StartedAt    int64  `json:"started_at,omitempty"`
}

// container is a record plus what the running supervisor holds for it.
type container struct {
	dir string

	// op serialises the operations that change one container (create,
	// start, delete, update); Kill, State and Wait do not take it.
	op sync.Mutex

	// exited is closed once exit is set (and persisted). Never reassigned.
	exited chan struct{}

	mu   sync.Mutex // guards the fields below
	rec  record
	exit *v1.ExitStatus
	// Held while the container's I/O is attached (attach/detach in io.go).
	log     *crilog.File
	readers []*os.File // FIFO read ends, stdout then stderr
	pidfd   *os.File
	stdinW  *os.File // the supervisor's write end of the stdin FIFO
	// console is a terminal container's pty master (non-blocking). It
	// outlives detach (an upgrade hands it to the next process); the output
	// reader closes it at the end of the output, Delete if still open.
	console *os.File
	// ioDone is closed when the log readers returned (EOF or detach).
	ioDone chan struct{}
	// waitDone is closed when the exit watcher returned.
	waitDone chan struct{}
	// deleting is set while Delete runs, so it runs once.
	deleting bool
	// attachers receive the live output (OpAttach), see attachers.go.
	attachers map[*attacher]struct{}
	// execBase is the process of the container's spec, for execs; nil
	// until the first (specProcess). Shared by execs: never changed.
	execBase *specs.Process
}

func newContainer(dir string, rec record) *container {
	return &container{dir: dir, rec: rec, exited: make(chan struct{})}
}

func (c *container) path(name string) string { return filepath.Join(c.dir, name) }

// state is the protocol view; the caller holds c.mu.
func (c *container) stateLocked() v1.State {
	st := v1.State{
		ID:        c.rec.ID,
		Kind:      c.rec.Kind,
		Pid:       c.rec.Pid,
		CreatedAt: c.rec.CreatedAt,
		StartedAt: c.rec.StartedAt,
		LogPath:   c.rec.LogPath,
	}
	switch {
	case c.exit != nil:
		st.Status = v1.StatusStopped
		e := *c.exit
		st.Exit = &e
	case c.rec.StartedAt != 0:
		st.Status = v1.StatusRunning
	case c.rec.Pid != 0:
		st.Status = v1.StatusCreated
	default:
		st.Status = v1.StatusUnknown
	}
	st.Terminal = c.rec.Terminal
	st.StdinOpen = c.rec.Stdin && !c.rec.StdinClosed
	if st.StdinOpen && !c.rec.Terminal {
		st.StdinPath = c.path("stdin")
	}
	if c.log != nil {
		if err := c.log.Err(); err != nil {
			st.LogError = err.Error()
		}
	}
	return st
}

func (c *container) state() v1.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

// saveLocked persists the record; the caller holds c.mu.
func (c *container) saveLocked() error {
	data, err := json.Marshal(c.rec)
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", c.rec.ID, err)
	}
	return atomicfile.WriteRecord(c.path("container.json"), data, 0o600, atomicfile.Volatile)
}

func loadRecord(dir string) (record, error) {
	var rec record
	data, err := atomicfile.ReadRecord(filepath.Join(dir, "container.json"))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", dir, err)
	}
	return rec, nil
}

// loadExit returns the recorded exit, nil if none was recorded.
func loadExit(dir string) (*v1.ExitStatus, error) {
	data, err := os.ReadFile(filepath.Join(dir, "exit.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e v1.ExitStatus
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode exit of %s: %w", dir, err)
	}
	return &e, nil
}

// validID accepts libcontainer's id alphabet, [A-Za-z0-9_+.-]+; it also
// keeps ids usable as a single path element. Checked by hand: this binary
// is every container's init too, and a package-level regexp (with the
// unicode tables it pulls in) costs each of them ~0.04 ms at start.
func validID(id string) bool {
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '+', b == '-', b == '.':
		default:
			return false
		}
	}
	return id != ""
}

func checkID(id string) error {
	if len(id) > 1024 || !validID(id) || id == "." || id == ".." {
		return v1.Errorf(v1.CodeInvalidArgument, "invalid container id %q", id)
	}
	return nil
}
