package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToGRPC(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"wrapped not found", fmt.Errorf("container abc: %w", ErrNotFound), codes.NotFound},
		{"double wrapped invalid", fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrInvalidArgument)), codes.InvalidArgument},
		{"deadline", fmt.Errorf("exec: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"plain", errors.New("boom"), codes.Unknown},
		{"existing status kept", status.Error(codes.Aborted, "x"), codes.Aborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := status.Code(ToGRPC(tc.err))
			if got != tc.want {
				t.Fatalf("code = %v, want %v", got, tc.want)
			}
			if tc.err != nil && status.Convert(ToGRPC(tc.err)).Message() != tc.err.Error() && tc.name != "existing status kept" {
				t.Fatalf("message changed: %q", status.Convert(ToGRPC(tc.err)).Message())
			}
		})
	}
}
