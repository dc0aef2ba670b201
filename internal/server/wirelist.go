package server

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// WireList keeps every entry of a List reply (ListContainers,
// ListPodSandbox) already encoded, so a reply is the concatenation of
// encoded entries rather than a fresh marshal of every object.
//
// Why: kubelet lists every container and every sandbox each second, and an
// entry changes only with its object's state (ids, metadata, labels,
// annotations and images are fixed at creation). With 200 containers,
// encoding the reply was the largest part of berthd's CPU per
// ListContainers (~0.35 of its ~1.2 ms, mostly the label and annotation
// maps, which marshal entry by entry through reflection), and each reply
// left ~800 allocations to the collector.
//
// The entries travel in the reply message's unknown fields: the wire form
// of a repeated message field is its entries one after the other, so a
// gRPC client decodes them into the field as if it had been set. A reply
// built this way must therefore be read through its encoding (as a gRPC
// client does, or with proto.Marshal and Unmarshal), not through the field.
type WireList[V comparable] struct {
	field protowire.Number

	// maxEntries bounds entries between complete listings.
	maxEntries int

	mu      sync.Mutex // guards entries and last
	entries map[string]wireEntry[V]
	// last is the previous reply and what it listed: a listing of the
	// same objects at the same versions in the same order (a settled
	// node's relist) gets those bytes again, not a copy of every entry.
	last struct {
		ids      []string
		versions []V
		raw      protoreflect.RawFields
	}
}

// maxWireEntries is far above the objects a node holds (kubelet's default
// 110 pods with a few containers each, and the exited ones it keeps).
const maxWireEntries = 1 << 14

type wireEntry[V comparable] struct {
	version V
	raw     []byte // tag, length and message: one entry of the field
}

// NewWireList returns a cache for the entries of reply's repeated message
// field named field. It panics if reply has no such field: a programming
// error, found at start.
func NewWireList[V comparable](reply proto.Message, field protoreflect.Name) *WireList[V] {
	fd := reply.ProtoReflect().Descriptor().Fields().ByName(field)
	if fd == nil || !fd.IsList() || fd.Kind() != protoreflect.MessageKind {
		panic(fmt.Sprintf("%s has no repeated message field %s", reply.ProtoReflect().Descriptor().FullName(), field))
	}
	return &WireList[V]{field: fd.Number(), entries: map[string]wireEntry[V]{}, maxEntries: maxWireEntries}
}

// WireItem is one object of a listing: its id, the version of it that its
// entry shows (the entry is encoded again when this changes), and how to
// build the entry.
type WireItem[V comparable] struct {
	ID      string
	Version V
	Build   func() proto.Message
}

// Fill puts the entries of items, in order, into reply (a message of the
// type the WireList was made for), where its encoding carries them as the
// repeated field. complete says items are every object there is (an
// unfiltered listing): the entries of objects no longer listed are then
// dropped.
func (w *WireList[V]) Fill(reply proto.Message, items []WireItem[V], complete bool) error {
	entries, err := w.encode(items, complete)
	if err != nil {
		return err
	}
	reply.ProtoReflect().SetUnknown(entries)
	return nil
}

// encode returns the encoded entries of items, in order; the bytes are
// shared between replies and must not be modified.
func (w *WireList[V]) encode(items []WireItem[V], complete bool) (protoreflect.RawFields, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case complete && len(w.entries) > len(items):
		w.drop(items)
	case len(w.entries) > w.maxEntries:
		// Only complete listings find the entries of objects gone; a
		// client that only ever filters must not grow the map forever.
		clear(w.entries)
	}
	if w.isLast(items) {
		return w.last.raw, nil
	}
	raws := make([][]byte, len(items))
	size := 0
	for i, it := range items {
		e, ok := w.entries[it.ID]
		if !ok || e.version != it.Version {
			msg, err := proto.Marshal(it.Build())
			if err != nil {
				return nil, fmt.Errorf("encode list entry %s: %w", it.ID, err)
			}
			raw := protowire.AppendTag(make([]byte, 0, len(msg)+12), w.field, protowire.BytesType)
			e = wireEntry[V]{version: it.Version, raw: protowire.AppendBytes(raw, msg)}
			w.entries[it.ID] = e
		}
		raws[i] = e.raw
		size += len(e.raw)
	}
	out := make([]byte, 0, size)
	for _, r := range raws {
		out = append(out, r...)
	}
	w.last.ids, w.last.versions, w.last.raw = w.last.ids[:0], w.last.versions[:0], out
	for _, it := range items {
		w.last.ids = append(w.last.ids, it.ID)
		w.last.versions = append(w.last.versions, it.Version)
	}
	return out, nil
}

// isLast says items are what the last reply listed.
func (w *WireList[V]) isLast(items []WireItem[V]) bool {
	if w.last.raw == nil || len(items) != len(w.last.ids) {
		return false
	}
	for i, it := range items {
		if it.ID != w.last.ids[i] || it.Version != w.last.versions[i] {
			return false
		}
	}
	return true
}

// drop forgets the entries of objects not among items.
func (w *WireList[V]) drop(items []WireItem[V]) {
	listed := make(map[string]struct{}, len(items))
	for _, it := range items {
		listed[it.ID] = struct{}{}
	}
	for id := range w.entries {
		if _, ok := listed[id]; !ok {
			delete(w.entries, id)
		}
	}
}
