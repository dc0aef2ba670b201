package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/metrics"
)

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// interceptor is the one place for cross-cutting work on every CRI call:
// request id, the readiness gate, logging (credentials redacted), metrics
// and the mapping of domain errors to gRPC codes.
type interceptor struct {
	log   logrus.FieldLogger
	ready *Readiness
	// metrics may be nil (records nothing).
	metrics *metrics.Metrics
}

func (i *interceptor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := newRequestID()
	ctx = logctx.WithFields(ctx, requestFields(id, info.FullMethod, req))
	log := logctx.G(ctx, i.log)
	if !i.ready.Ready() && !alwaysOpen[info.FullMethod] {
		i.metrics.CRIRequest(info.FullMethod, codes.Unavailable.String(), 0)
		return nil, status.Error(codes.Unavailable, "berthd is still recovering its state after start; retry")
	}
	start := time.Now()
	if traceEnabled(i.log) {
		log.WithField("request", marshalForLog(req)).Trace("request")
	}
	var resp any
	err := guard(log, func() (err error) {
		resp, err = handler(ctx, req)
		return err
	})
	err = errdefs.ToGRPC(err)
	code, took := status.Code(err), time.Since(start)
	i.metrics.CRIRequest(info.FullMethod, code.String(), took)
	entry := log.WithFields(logrus.Fields{"code": code.String(), "took": took.Round(time.Microsecond)})
	switch {
	case code == codes.OK:
		entry.Debug("done")
	case code == codes.NotFound || code == codes.Canceled:
		// Races kubelet expects (an object removed meanwhile): not an error of ours.
		entry.WithError(err).Debug("done")
	default:
		entry.WithError(err).Warn("failed")
	}
	return resp, namingRequest(err, id)
}

func (i *interceptor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := newRequestID()
	ctx := logctx.WithFields(ss.Context(), requestFields(id, info.FullMethod, nil))
	log := logctx.G(ctx, i.log)
	if !i.ready.Ready() && !alwaysOpen[info.FullMethod] {
		i.metrics.CRIRequest(info.FullMethod, codes.Unavailable.String(), 0)
		return status.Error(codes.Unavailable, "berthd is still recovering its state after start; retry")
	}
	start := time.Now()
	err := errdefs.ToGRPC(guard(log, func() error {
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}))
	took := time.Since(start)
	code := status.Code(err)
	i.metrics.CRIRequest(info.FullMethod, code.String(), took)
	entry := log.WithFields(logrus.Fields{"code": code.String(), "took": took.Round(time.Microsecond)})
	if err != nil && code != codes.Canceled {
		entry.WithError(err).Warn("stream failed")
	} else {
		entry.Debug("stream done")
	}
	return namingRequest(err, id)
}

// requestFields are the log fields of a request: its id, the RPC's short
// name, and the pod and container it names (req may be nil). Requests
// that make a pod or container get that field from its manager once the
// id exists.
func requestFields(id, fullMethod string, req any) logrus.Fields {
	f := logrus.Fields{logctx.RequestIDField: id, logctx.RPCField: path.Base(fullMethod)}
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		f[logctx.PodField] = r.GetPodSandboxId()
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		f[logctx.ContainerField] = r.GetContainerId()
	}
	return f
}

// namingRequest adds the request id to a failure's message, so that the
// error kubelet reports leads to every log line of the request (berthd's
// and the supervisor's carry request_id). The code and details are kept.
func namingRequest(err error, id string) error {
	if err == nil {
		return nil
	}
	p := status.Convert(err).Proto()
	p.Message = fmt.Sprintf("%s (request %s)", p.Message, id)
	return status.FromProto(p).Err()
}

// guard runs a handler and turns its panic into an Internal error: one
// malformed request must not take down the runtime of every pod on the
// node. Locks the handler took with defer are released on the way out.
func guard(log logrus.FieldLogger, handler func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.WithFields(logrus.Fields{"panic": r, "stack": string(debug.Stack())}).Error("handler panicked")
			err = status.Errorf(codes.Internal, "berthd failed on this request (a bug, logged): %v", r)
		}
	}()
	return handler()
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// traceEnabled asks berthd's own logger, not logrus's standard one (which
// berthd does not use): asking the latter kept log_level = "trace" from
// ever logging a request.
func traceEnabled(l logrus.FieldLogger) bool {
	switch l := l.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.TraceLevel)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.TraceLevel)
	}
	return false
}

func marshalForLog(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	b, err := protojson.Marshal(redacted(m))
	if err != nil {
		return ""
	}
	return string(b)
}
