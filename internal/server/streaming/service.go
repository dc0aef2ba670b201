// Package streaming is the CRI edge of running things in containers:
// ExecSync, and Exec, Attach and PortForward, whose sessions go through an
// HTTP streaming server (k8s.io/cri-streaming: SPDY and WebSocket, as kubelet
// and kubectl speak them). The RPCs only hand out single-use URLs; the
// sessions then call back into runtime (runtime.go).
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	criStreaming "k8s.io/cri-streaming/pkg/streaming"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/exec"
	"github.com/berth-cri/berth/internal/supervisor/client"
)

// Lookup resolves CRI ids; the container and sandbox services implement it.
type Lookup interface {
	// ExecTarget: errdefs.ErrNotFound for an unknown container,
	// errdefs.ErrFailedPrecondition for one that is not running.
	ExecTarget(ctx context.Context, containerID string) (exec.Target, error)
	// AttachTarget: the same errors as ExecTarget.
	AttachTarget(ctx context.Context, containerID string) (AttachTarget, error)
	// SandboxNetNS returns the sandbox's pinned netns path, "" for a
	// host-network sandbox; errdefs.ErrNotFound for an unknown sandbox.
	SandboxNetNS(ctx context.Context, podSandboxID string) (string, error)
}

// AttachTarget is what an attach needs to know about a container.
type AttachTarget struct {
	// ID is the supervisor's id of the container.
	ID string
	// Stdin, StdinOnce and TTY are the container's CRI config flags.
	Stdin, StdinOnce, TTY bool
}

// Config configures the streaming server.
type Config struct {
	// Address to listen on (default 127.0.0.1); Port 0 picks a free one.
	Address string
	Port    int
	// IdleTimeout closes a streaming session idle that long (default 4h).
	IdleTimeout time.Duration
	// TLSCert and TLSKey enable https when both are set.
	TLSCert, TLSKey string
	// MaxExecOutput caps ExecSync's stdout+stderr (default 16 MiB, what
	// kubelet accepts in one reply).
	MaxExecOutput int
}

// Service serves ExecSync, Exec, Attach and PortForward.
type Service struct {
	cfg    Config
	lookup Lookup
	execer *exec.Execer
	sup    *client.Client
	log    logrus.FieldLogger

	mu     sync.Mutex // guards the fields below
	server criStreaming.Server
	http   *http.Server
	addr   net.Addr
}

// New checks cfg and returns a Service; nothing listens before Start.
func New(cfg Config, lookup Lookup, execer *exec.Execer, sup *client.Client, log logrus.FieldLogger) (*Service, error) {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("stream server port %d: %w", cfg.Port, errdefs.ErrInvalidArgument)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, fmt.Errorf("stream server TLS needs both a certificate and a key: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = criStreaming.DefaultConfig.StreamIdleTimeout
	}
	if cfg.MaxExecOutput <= 0 {
		cfg.MaxExecOutput = exec.DefaultMaxOutput
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Service{cfg: cfg, lookup: lookup, execer: execer, sup: sup, log: log.WithField("component", "streaming")}, nil
}

// Start listens and serves streaming sessions in the background. The URLs
// handed out carry the address actually bound (port 0 resolved).
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		return errors.New("stream server already started")
	}
	var tlsCfg *tls.Config
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("stream server TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Address, strconv.Itoa(s.cfg.Port)))
	if err != nil {
		return fmt.Errorf("stream server listen: %w", err)
	}
	base := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	if tlsCfg != nil {
		base.Scheme = "https"
		ln = tls.NewListener(ln, tlsCfg)
	}
	cfg := criStreaming.DefaultConfig
	cfg.Addr, cfg.BaseURL, cfg.StreamIdleTimeout, cfg.TLSConfig = ln.Addr().String(), base, s.cfg.IdleTimeout, tlsCfg
	server, err := criStreaming.NewServer(cfg, &runtime{s: s})
	if err != nil {
		ln.Close()
		return fmt.Errorf("stream server: %w", err)
	}
	// The listener is ours (TLS already wrapped), so the library's own
	// Start is not used; its handler serves the sessions.
	hs := &http.Server{Handler: server, ReadHeaderTimeout: 30 * time.Second}
	s.server, s.http, s.addr = server, hs, ln.Addr()
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.WithError(err).Error("stream server stopped")
		}
	}()
	s.log.WithField("address", base.String()).Info("stream server listening")
	return nil
}

// Stop closes the listener and every open session.
func (s *Service) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http == nil {
		return nil
	}
	err := s.http.Close()
	s.http, s.server = nil, nil
	return err
}

// Addr is the address the server listens on (nil before Start).
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Service) streamServer() (criStreaming.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server == nil {
		return nil, fmt.Errorf("stream server not started: %w", errdefs.ErrUnavailable)
	}
	return s.server, nil
}
