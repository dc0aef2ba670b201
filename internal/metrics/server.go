package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// Server serves /metrics over plain HTTP on metrics_address.
type Server struct {
	srv *http.Server
	lis net.Listener
}

// Serve listens on addr (host:port) before returning, so a port in use is
// an error at start rather than a log line later, and serves m's /metrics
// until Shutdown. The endpoint has no authentication: addr is normally a
// loopback address.
func Serve(addr string, m *Metrics, log logrus.FieldLogger) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	s := &Server{
		// Timeouts keep a stuck scraper from holding a connection forever.
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute},
		lis: lis,
	}
	go func() {
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics endpoint stopped")
		}
	}()
	return s, nil
}

// Addr is the address listened on (the real port when addr asked for 0).
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Shutdown stops listening and waits, until ctx ends, for scrapes in
// flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
