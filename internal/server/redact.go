package server

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// redacted returns a copy of m with every field marked debug_redact cleared
// (cri-api marks AuthConfig's credentials so), at any depth, so a logged
// request can never carry a password or token. m itself is not modified.
func redacted(m proto.Message) proto.Message {
	if m == nil || !hasRedacted(m.ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{}) {
		return m
	}
	c := proto.Clone(m)
	clearRedacted(c.ProtoReflect())
	return c
}

func isRedacted(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	return ok && opts.GetDebugRedact()
}

// hasRedacted reports whether messages of type md can hold a redacted field,
// so the common requests are logged without a clone.
func hasRedacted(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if isRedacted(fd) {
			return true
		}
		if fd.Message() != nil && hasRedacted(fd.Message(), seen) {
			return true
		}
		if fd.IsMap() && fd.MapValue().Message() != nil && hasRedacted(fd.MapValue().Message(), seen) {
			return true
		}
	}
	return false
}

func clearRedacted(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case isRedacted(fd):
			m.Clear(fd)
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearRedacted(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				clearRedacted(mv.Message())
				return true
			})
		case fd.Message() != nil && !fd.IsMap():
			clearRedacted(v.Message())
		}
		return true
	})
}
