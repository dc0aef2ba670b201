// Package errdefs holds the sentinel errors that domain packages wrap with
// fmt.Errorf("...: %w", err) and that the gRPC edge maps to status codes, once,
// in ToGRPC. Domain code never imports grpc/status.
package errdefs

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrInvalidArgument: the request itself is wrong; retrying it cannot help.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the name or id is taken by another object.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition: the object exists but is in the wrong state.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: berthd (or a part it needs) is not ready yet; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnimplemented: a documented decision not to support something.
	ErrUnimplemented = errors.New("not implemented")
	// ErrResourceExhausted: a size or count limit was hit.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrUnauthenticated: a registry refused our credentials.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the operation is refused by policy.
	ErrPermissionDenied = errors.New("permission denied")
)

// ToGRPC turns an error from a domain package into a gRPC status error. An
// error that already carries a status (from a nested gRPC call) keeps it.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// Code is the gRPC code for err.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, ErrResourceExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}
