// Package logctx carries a request's log fields in its context, so that
// every line the request causes, however deep in the domain code (and in
// the supervisor, which receives the request id over its protocol), names
// the request: grep one request id and the whole operation shows.
//
// The context carries fields, not a logger: each part of berthd keeps the
// logger it was wired with (its "part" field, its level), and G adds the
// request's fields to it. Code without a request (start-up recovery,
// background loops) passes a context without fields and logs as before.
package logctx

import (
	"context"

	"github.com/sirupsen/logrus"
)

// The field names every line of a request may carry.
const (
	// RequestIDField is the request id the gRPC interceptor assigns (and
	// berthd's supervisor client passes on to the supervisor).
	RequestIDField = "request_id"
	// RPCField is the CRI method's short name (CreateContainer).
	RPCField = "rpc"
	// PodField and ContainerField name the pod sandbox and container the
	// request is about, once known.
	PodField       = "pod"
	ContainerField = "container"
)

type fieldsKey struct{}

// WithFields returns ctx carrying fields in addition to those it carries;
// a field already present takes the new value. ctx is not modified.
func WithFields(ctx context.Context, fields logrus.Fields) context.Context {
	if len(fields) == 0 {
		return ctx
	}
	old := Fields(ctx)
	merged := make(logrus.Fields, len(old)+len(fields))
	for k, v := range old {
		merged[k] = v
	}
	for k, v := range fields {
		merged[k] = v
	}
	return context.WithValue(ctx, fieldsKey{}, merged)
}

// WithField is WithFields for one field.
func WithField(ctx context.Context, key string, value any) context.Context {
	return WithFields(ctx, logrus.Fields{key: value})
}

// Fields returns the fields ctx carries (nil for none). The map is shared:
// callers must not modify it.
func Fields(ctx context.Context) logrus.Fields {
	if ctx == nil {
		return nil // a library that passes none
	}
	f, _ := ctx.Value(fieldsKey{}).(logrus.Fields)
	return f
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := Fields(ctx)[RequestIDField].(string)
	return id
}

// G returns log with the fields of ctx's request added: the logger for a
// line about work done for that request. With no fields in ctx it is log.
func G(ctx context.Context, log logrus.FieldLogger) logrus.FieldLogger {
	if f := Fields(ctx); len(f) > 0 {
		return log.WithFields(f)
	}
	return log
}
