package server

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestWireListReplyDecodesAsTheField(t *testing.T) {
	type obj struct {
		id    string
		state runtimeapi.ContainerState
	}
	build := func(o obj, calls map[string]int) func() proto.Message {
		return func() proto.Message {
			calls[o.id]++
			return &runtimeapi.Container{Id: o.id, State: o.state, Labels: map[string]string{"app": o.id}, Annotations: map[string]string{"a": "b"}}
		}
	}
	a := obj{"a", runtimeapi.ContainerState_CONTAINER_CREATED}
	b := obj{"b", runtimeapi.ContainerState_CONTAINER_RUNNING}
	aRunning := obj{"a", runtimeapi.ContainerState_CONTAINER_RUNNING}
	// Each step lists objs on the same WireList; builds is how many times
	// each id's entry is encoded by that step, kept the entries held after
	// it, reused whether the reply is the last one's bytes.
	steps := []struct {
		name     string
		objs     []obj
		complete bool
		builds   map[string]int
		kept     int
		reused   bool
	}{
		{"first listing encodes every entry", []obj{a, b}, true, map[string]int{"a": 1, "b": 1}, 2, false},
		{"the same listing again is the last reply", []obj{a, b}, true, map[string]int{}, 2, true},
		{"another order is a new reply of the same entries", []obj{b, a}, true, map[string]int{}, 2, false},
		{"a state change encodes that entry again", []obj{aRunning, b}, true, map[string]int{"a": 1}, 2, false},
		{"a filtered listing keeps the others", []obj{b}, false, map[string]int{}, 2, false},
		{"a complete listing drops the gone, even as the last reply", []obj{b}, true, map[string]int{}, 1, true},
		{"an empty complete listing drops all", nil, true, map[string]int{}, 0, false},
	}
	var last []byte
	w := NewWireList[runtimeapi.ContainerState](&runtimeapi.ListContainersResponse{}, "containers")
	for _, st := range steps {
		calls := map[string]int{}
		var items []WireItem[runtimeapi.ContainerState]
		var want []*runtimeapi.Container
		for _, o := range st.objs {
			items = append(items, WireItem[runtimeapi.ContainerState]{ID: o.id, Version: o.state, Build: build(o, calls)})
			want = append(want, build(o, map[string]int{})().(*runtimeapi.Container))
		}
		entries, err := w.encode(items, st.complete)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if reused := len(entries) > 0 && len(last) > 0 && &entries[0] == &last[0]; reused != st.reused {
			t.Errorf("%s: reply reused the last one's bytes: %v, want %v", st.name, reused, st.reused)
		}
		last = entries
		reply := &runtimeapi.ListContainersResponse{}
		reply.ProtoReflect().SetUnknown(entries)
		wire, err := proto.Marshal(reply)
		if err != nil {
			t.Fatalf("%s: marshal: %v", st.name, err)
		}
		var got runtimeapi.ListContainersResponse
		if err := proto.Unmarshal(wire, &got); err != nil {
			t.Fatalf("%s: unmarshal: %v", st.name, err)
		}
		if !proto.Equal(&got, &runtimeapi.ListContainersResponse{Containers: want}) {
			t.Errorf("%s: decoded %v, want %v", st.name, got.GetContainers(), want)
		}
		for id, n := range calls {
			if n != st.builds[id] {
				t.Errorf("%s: %s encoded %d times, want %d", st.name, id, n, st.builds[id])
			}
		}
		for id, n := range st.builds {
			if calls[id] != n {
				t.Errorf("%s: %s encoded %d times, want %d", st.name, id, calls[id], n)
			}
		}
		if len(w.entries) != st.kept {
			t.Errorf("%s: %d entries kept, want %d", st.name, len(w.entries), st.kept)
		}
	}
}

// Only complete listings find the entries of objects gone: filtered ones
// must not grow the cache past its bound.
func TestWireListFilteredListingsStayBounded(t *testing.T) {
	w := NewWireList[int](&runtimeapi.ListContainersResponse{}, "containers")
	w.maxEntries = 2
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		item := WireItem[int]{ID: id, Build: func() proto.Message { return &runtimeapi.Container{Id: id} }}
		entries, err := w.encode([]WireItem[int]{item}, false)
		if err != nil {
			t.Fatal(err)
		}
		var got runtimeapi.ListContainersResponse
		if err := proto.Unmarshal(entries, &got); err != nil || len(got.Containers) != 1 || got.Containers[0].Id != id {
			t.Fatalf("listing %s: decoded %v (%v)", id, got.GetContainers(), err)
		}
		if len(w.entries) > w.maxEntries+1 {
			t.Fatalf("after %d filtered listings: %d entries, bound %d", i+1, len(w.entries), w.maxEntries)
		}
	}
}

func TestNewWireListRefusesAFieldThatIsNotARepeatedMessage(t *testing.T) {
	for _, tc := range []struct {
		reply proto.Message
		field protoreflect.Name
	}{
		{&runtimeapi.ListContainersResponse{}, "nope"},         // no such field
		{&runtimeapi.ContainerStatusRequest{}, "container_id"}, // a scalar
		{&runtimeapi.ContainerStatusResponse{}, "status"},      // a single message
		{&runtimeapi.ContainerStatusResponse{}, "info"},        // a map
		{&runtimeapi.ListContainersRequest{}, "filter"},        // a single message
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewWireList(%T, %q) did not panic", tc.reply, tc.field)
				}
			}()
			NewWireList[int](tc.reply, tc.field)
		}()
	}
}
