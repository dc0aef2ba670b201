package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/keeper"
	"github.com/berth-cri/berth/internal/logctx"
)

// Config is what the supervisor needs to run.
type Config struct {
	// StateDir is berth's state directory; the supervisor keeps its own
	// files under StateDir/supervisor.
	StateDir string
	// Executable is the binary path Upgrade re-executes (resolved at start,
	// before anyone replaces the file).
	Executable string
	// Args are the arguments Upgrade re-executes with (os.Args).
	Args []string
	// BinaryVersion is reported by Version.
	BinaryVersion string
	// ExecutableFile identifies Executable's file ("<dev>:<inode>"), as
	// it was when the supervisor started; reported by Version.
	ExecutableFile string
	// Logger receives the supervisor's lines (nil: logrus's standard
	// logger). Lines of a request carry its fields (see requestContext).
	Logger logrus.FieldLogger
	// OneProcInits has every init start with one P: GOMAXPROCS=1 in the
	// process's environment (oneProcInits). The binary sets it; tests that
	// run a Server inside their own process leave it off, so the processes
	// they start after it keep their environment.
	OneProcInits bool
}

// Server is the supervisor.
type Server struct {
	cfg    Config
	dir    string
	log    logrus.FieldLogger
	bootID string
	lock   *os.File
	ln     *net.UnixListener
	rt     map[v1.RuntimeKind]runtime

	// opMu: operations that change containers hold it shared; Upgrade holds
	// it exclusively, so no operation is half-done when the process execs.
	opMu sync.RWMutex

	mu         sync.Mutex // guards containers and execs; never held while calling a runtime
	containers map[string]*container
	// execs are the pids of running exec'd processes (OpExec), which their
	// own connections reap; the orphan reaper leaves them alone.
	execs map[int]struct{}
	// upgrading is set while an upgrade runs: Serve pauses accepting.
	upgrading bool

	// resume tells a paused Serve that a failed upgrade resumed.
	resume chan struct{}

	// consoles are the pty masters an upgrade handed over, by container id;
	// recover gives them to their containers (only New uses it).
	consoles map[string]*os.File

	// kmsg is the kernel log's account of OOM kills (kmsgoom.go).
	kmsg *kernelOOMs
	// ownMaxProcs is the GOMAXPROCS variable the supervisor started with
	// (nil: none), for an upgrade's new supervisor when the process's
	// environment has the inits' (Config.OneProcInits).
	ownMaxProcs *string
	// keeper is the hold channel to the keeper above us (nil: none, and
	// then nothing outlives a crash of ours); exits is where it records
	// the exits of the processes it reaped.
	keeper *keeper.Conn
	exits  string
	// criuMu serialises criuOnPath (checkpoint.go).
	criuMu sync.Mutex
}

// SocketPath is where the supervisor of stateDir listens.
func SocketPath(stateDir string) string {
	return filepath.Join(stateDir, "supervisor", "supervisor.sock")
}

// New takes the supervisor lock (or inherits it through an upgrade), makes
// itself a child subreaper, re-adopts the containers on disk and listens.
// It fails with an error wrapping ErrRunning when another supervisor runs.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	s := &Server{
		cfg:        cfg,
		dir:        filepath.Join(cfg.StateDir, "supervisor"),
		log:        log,
		bootID:     newBootID(),
		containers: map[string]*container{},
		resume:     make(chan struct{}),
		kmsg:       newKernelOOMs(),
		keeper:     keeper.ConnFromEnv(),
		exits:      keeper.ExitsDir(cfg.StateDir),
	}
	if cfg.OneProcInits {
		if v, ok := os.LookupEnv(maxProcsEnv); ok {
			s.ownMaxProcs = &v
		}
		if err := oneProcInits(); err != nil {
			return nil, err
		}
	}
	s.rt = map[v1.RuntimeKind]runtime{
		v1.RuntimeLibcontainer: &libcontainerRuntime{dir: s.containerDir},
		v1.RuntimeOCI:          ociRuntime{dir: s.containerDir},
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "containers"), 0o700); err != nil {
		return nil, fmt.Errorf("supervisor state dir: %w", err)
	}
	// Orphaned inits of oci-kind containers come to us, not to pid 1.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("set child subreaper: %w", err)
	}
	inherited, err := s.takeOver()
	if err != nil {
		return nil, err
	}
	if !inherited {
		if err := s.lockAndListen(); err != nil {
			return nil, err
		}
	}
	if err := s.recover(); err != nil {
		s.ln.Close()
		s.lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) containerDir(id string) string { return filepath.Join(s.dir, "containers", id) }

func newBootID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ErrRunning: another supervisor holds the lock.
var ErrRunning = errors.New("another supervisor is running")

// lockAndListen takes the flock (refusing to start beside a live
// supervisor), then replaces any stale socket and listens.
func (s *Server) lockAndListen() error {
	path := filepath.Join(s.dir, "supervisor.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", path, ErrRunning)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	s.lock = f
	sock := filepath.Join(s.dir, "supervisor.sock")
	// We hold the lock: a socket file left here belongs to a dead supervisor.
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		f.Close()
		return fmt.Errorf("listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		f.Close()
		return fmt.Errorf("chmod socket: %w", err)
	}
	s.ln = ln
	return nil
}

// Serve answers connections until the listener closes (an upgrade execs out
// of Serve and never returns).
func (s *Server) Serve() error {
	stop := make(chan struct{})
	defer close(stop)
	go s.reapOrphans(stop)
	go s.sweepKeeperExitsEvery(keeperSweepInterval, stop)
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.mu.Lock()
				upgrading := s.upgrading
				s.mu.Unlock()
				if upgrading {
					<-s.resume // exec succeeded (never returns) or failed
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		go s.serveConn(conn)
	}
}

// maxRequest bounds one request line.
const maxRequest = 1 << 20

// maxRequestFiles bounds the descriptors one request may carry (OpExec's
// stdin, stdout and stderr).
const maxRequestFiles = 3

func (s *Server) serveConn(conn *net.UnixConn) {
	defer conn.Close()
	// The first read takes the descriptors sent with the request, if any;
	// only OpExec keeps them.
	first, files, err := readFirst(conn)
	if err != nil {
		closeFiles(files)
		return
	}
	lr := &io.LimitedReader{R: conn, N: maxRequest - int64(len(first))}
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(first), lr), 4096)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		closeFiles(files)
		return
	}
	defer func() { closeFiles(files) }()
	var resp v1.Response
	req, derr := v1.DecodeRequest(line)
	if derr != nil {
		resp.Error = derr
		logctx.G(requestContext(context.Background(), &req), s.log).WithError(resp.Error).Warn("refused a request")
	} else if req.Op == v1.OpUpgrade {
		s.upgrade(conn)
		return
	} else if req.Op == v1.OpExec || req.Op == v1.OpExecCommand {
		s.serveExec(requestContext(context.Background(), &req), conn, br, &req, files)
		files = nil // serveExec closed them
		return
	} else if req.Op == v1.OpAttach {
		// The request is read; input frames that follow are not bounded.
		lr.N = math.MaxInt64
		s.serveAttach(requestContext(context.Background(), &req), conn, br, req.ID)
		return
	} else {
		// A client hanging up cancels what it waits for (Wait).
		ctx, cancel := context.WithCancel(requestContext(context.Background(), &req))
		defer cancel()
		watchHangUp := func() {
			go func() {
				io.Copy(io.Discard, br)
				cancel()
			}()
		}
		var gate func() error
		if req.Op == v1.OpCreateWhenReady {
			// The Proceed line comes first; the watch starts after it.
			gate = func() error {
				err := readProceed(conn, br)
				if err == nil {
					watchHangUp()
				}
				return err
			}
		} else {
			watchHangUp()
		}
		start := time.Now()
		resp = s.handle(ctx, &req, gate)
		s.logResult(ctx, req.Op, resp.Error, time.Since(start))
	}
	writeResponse(conn, &resp)
}

// requestContext is ctx carrying req's log fields: the CRI request id
// berthd sent (1.7), the operation and the container. Every line logged
// for the operation carries them (logctx.G), so that berthd's
// "request_id=..." finds the supervisor's lines as well as its own.
func requestContext(ctx context.Context, req *v1.Request) context.Context {
	f := logrus.Fields{"op": string(req.Op)}
	if req.RequestID != "" {
		f[logctx.RequestIDField] = req.RequestID
	}
	if req.ID != "" {
		f[logctx.ContainerField] = req.ID
	}
	return logctx.WithFields(ctx, f)
}

// quietOps are asked all the time (berthd's liveness check, kubelet's
// relists): their successes are not logged even at debug level.
var quietOps = map[v1.Op]bool{v1.OpVersion: true, v1.OpStats: true, v1.OpList: true, v1.OpState: true, v1.OpWait: true}

// logResult logs how an operation ended. A failure is a warning, except
// what is routine: an unknown container (berthd and kubelet race with
// removals), a failed exec (berthd reports it as the command's exit) and
// a call whose client hung up (every Wait when berthd stops).
func (s *Server) logResult(ctx context.Context, op v1.Op, e *v1.Error, took time.Duration) {
	log := logctx.G(ctx, s.log).WithField("took", took.Round(time.Microsecond))
	switch {
	case e == nil:
		if !quietOps[op] {
			log.Debug("done")
		}
	case e.Code == v1.CodeNotFound || op == v1.OpExec || op == v1.OpExecCommand || ctx.Err() != nil:
		log.WithError(e).Debug("failed")
	default:
		log.WithError(e).Warn("failed")
	}
}

// readProceed reads OpCreateWhenReady's Proceed line; a refusal, a
// hang-up or silence past v1.ProceedTimeout is an error.
func readProceed(conn *net.UnixConn, br *bufio.Reader) error {
	conn.SetReadDeadline(time.Now().Add(v1.ProceedTimeout))
	defer conn.SetReadDeadline(time.Time{})
	line, err := br.ReadBytes('\n')
	if err != nil {
		return v1.Errorf(v1.CodeFailedPrecondition, "create given up: no word from the client: %v", err)
	}
	var p v1.Proceed
	if err := json.Unmarshal(line, &p); err != nil {
		return v1.Errorf(v1.CodeInvalidArgument, "decode proceed: %v", err)
	}
	if !p.OK {
		return v1.Errorf(v1.CodeFailedPrecondition, "create given up by the client: %s", p.Reason)
	}
	return nil
}

// readFirst reads the start of a request with the descriptors sent on it.
// More than maxRequestFiles descriptors (or a truncated set) refuse the
// connection.
func readFirst(conn *net.UnixConn) ([]byte, []*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*(maxRequestFiles+1)))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	files := keeper.ParseRights(oob[:oobn])
	if err == nil && (flags&unix.MSG_CTRUNC != 0 || len(files) > maxRequestFiles) {
		err = errors.New("too many descriptors")
	}
	if err != nil {
		return nil, files, err
	}
	return buf[:n], files, nil
}

func encodeResponse(resp *v1.Response) ([]byte, error) {
	data, err := json.Marshal(resp)
	if err != nil {
		data, err = json.Marshal(&v1.Response{Error: v1.Errorf(v1.CodeInternal, "encode response: %v", err)})
	}
	return append(data, '\n'), err
}

func writeResponse(conn net.Conn, resp *v1.Response) {
	data, _ := encodeResponse(resp)
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	conn.Write(data)
}

// handle runs one operation. gate is OpCreateWhenReady's wait for the
// client's Proceed (nil for every other operation).
func (s *Server) handle(ctx context.Context, req *v1.Request, gate func() error) (resp v1.Response) {
	var err error
	switch req.Op {
	case v1.OpVersion:
		resp.Version = &v1.VersionInfo{Protocol: v1.Version, Binary: s.cfg.BinaryVersion, Pid: os.Getpid(), BootID: s.bootID, File: s.cfg.ExecutableFile}
		if s.keeper != nil {
			resp.Version.KeeperPid = os.Getppid()
		}
	case v1.OpStats:
		resp.Stats = s.stats()
	case v1.OpList:
		resp.List = s.list()
	case v1.OpState:
		var c *container
		if c, err = s.get(req.ID); err == nil {
			st := c.state()
			resp.State = &st
		}
	case v1.OpWait:
		resp.State, err = s.wait(ctx, req.ID)
	case v1.OpCreate, v1.OpCreateWhenReady, v1.OpStart, v1.OpKill, v1.OpDelete, v1.OpReopenLog, v1.OpCloseStdin, v1.OpUpdateResources,
		v1.OpCheckpoint, v1.OpRestore, v1.OpPause, v1.OpResume:
		s.opMu.RLock()
		defer s.opMu.RUnlock()
		switch req.Op {
		case v1.OpCreate, v1.OpCreateWhenReady, v1.OpRestore:
			if (req.Op == v1.OpRestore) != (req.Create != nil && req.Create.Restore != nil) {
				err = v1.Errorf(v1.CodeInvalidArgument, "a dump to restore goes with %s only", v1.OpRestore)
				break
			}
			resp.State, err = s.create(ctx, req.ID, req.Create, gate)
		case v1.OpCheckpoint:
			err = s.checkpoint(ctx, req.ID, req.Checkpoint)
		case v1.OpPause, v1.OpResume:
			err = s.pause(req.ID, req.Op == v1.OpPause)
		case v1.OpStart:
			resp.State, err = s.start(ctx, req.ID)
		case v1.OpKill:
			err = s.kill(ctx, req.ID, req.Kill)
		case v1.OpDelete:
			err = s.delete(ctx, req.ID)
		case v1.OpReopenLog:
			err = s.reopenLog(req.ID)
		case v1.OpCloseStdin:
			err = s.closeStdin(req.ID)
		case v1.OpUpdateResources:
			err = s.updateResources(ctx, req.ID, req.Update)
		}
	default:
		err = v1.Errorf(v1.CodeUnimplemented, "unknown operation %q", req.Op)
	}
	if err != nil {
		resp = v1.Response{Error: toAPIError(err)}
	}
	return resp
}

func toAPIError(err error) *v1.Error {
	var e *v1.Error
	if errors.As(err, &e) {
		if e.Error() == err.Error() {
			return e
		}
		return &v1.Error{Code: e.Code, Message: err.Error()}
	}
	return &v1.Error{Code: v1.CodeInternal, Message: err.Error()}
}

func (s *Server) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, v1.Errorf(v1.CodeNotFound, "container %q", id)
	}
	return c, nil
}

func (s *Server) list() []v1.State {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	out := make([]v1.State, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.state())
	}
	return out
}

func (s *Server) stats() *v1.Stats {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	return &v1.Stats{Containers: n, Goroutines: goroutines(), OpenFDs: openFDs()}
}
