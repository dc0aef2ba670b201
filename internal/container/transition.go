package container

import "github.com/berth-cri/berth/internal/store"

// transitions is the container state machine, written once: the states a
// container in each state may move to. The record table checks every
// update against it (store.TableOptions.Transition), so no call site can
// move a container another way.
//
//	creating -> created            the create finished
//	created  -> running            started (or found started at recovery)
//	created  -> exited             exited before berthd saw it run, or lost
//	running  -> exited             its exit recorded, or lost
//
// A create that fails is rolled back and forgotten in creating; an exited
// container only leaves by removal.
var transitions = store.Transitions[State]{
	StateCreating: {StateCreated},
	StateCreated:  {StateRunning, StateExited},
	StateRunning:  {StateExited},
	StateExited:   nil,
}

// transition checks a record update against transitions (for the record
// table).
func transition(before, after *Container) error {
	return transitions.Check("container", before.ID, before.State, after.State)
}
