package sandbox

import "github.com/berth-cri/berth/internal/store"

// transitions is the sandbox state machine, written once: the states a
// sandbox in each state may move to. The record table checks every update
// against it (store.TableOptions.Transition), so no call site can move a
// sandbox another way.
//
//	creating -> ready      RunPodSandbox finished
//	creating -> notready   an interrupted create whose rollback failed at
//	                       recovery (listed, for kubelet to remove)
//	ready    -> notready   stopped, or its pause ended
//
// A Run that fails is rolled back and forgotten in creating; a sandbox not
// ready only leaves by removal.
var transitions = store.Transitions[State]{
	StateCreating: {StateReady, StateNotReady},
	StateReady:    {StateNotReady},
	StateNotReady: nil,
}

// transition checks a record update against transitions (for the record
// table).
func transition(before, after *Sandbox) error {
	return transitions.Check("pod sandbox", before.ID, before.State, after.State)
}
