// Package fakes holds in-memory stand-ins for the parts the container and
// sandbox managers use (images, snapshots, the supervisor, the pod network,
// network namespace pins, record persistence), for unit tests that run
// without root and without real processes. Each fake records its calls in
// a shared Recorder and fails a call whose name was given to Recorder.Fail,
// so a test can fail any step of an operation and check what was undone.
package fakes

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Recorder logs the calls of the fakes sharing it ("Supervisor.Start id")
// and holds the failures to inject.
type Recorder struct {
	// OnCall, if set, is called with each call's log line before it
	// returns (outside the lock): a test blocks or cancels there.
	OnCall func(call string)

	mu    sync.Mutex
	calls []string
	fail  map[string]failure
}

type failure struct {
	err   error
	match func(args []string) bool // nil: every call
}

// Fail makes every call to name ("Images.Use", "Supervisor.Create", ...)
// fail with err until Clear; err nil stops failing it.
func (r *Recorder) Fail(name string, err error) { r.FailIf(name, err, nil) }

// FailIf is Fail for the calls whose arguments (as the call log shows
// them) match.
func (r *Recorder) FailIf(name string, err error, match func(args []string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail == nil {
		r.fail = map[string]failure{}
	}
	if err == nil {
		delete(r.fail, name)
		return
	}
	r.fail[name] = failure{err, match}
}

// Clear stops every injected failure.
func (r *Recorder) Clear() {
	r.mu.Lock()
	r.fail = nil
	r.mu.Unlock()
}

// Call logs name with args and returns the failure injected for it
// (for a test's own fakes too).
func (r *Recorder) Call(name string, args ...any) error {
	strs := make([]string, len(args))
	for i, a := range args {
		strs[i] = fmt.Sprint(a)
	}
	line := strings.TrimSpace(name + " " + strings.Join(strs, " "))
	r.mu.Lock()
	r.calls = append(r.calls, line)
	f, failing := r.fail[name]
	onCall := r.OnCall
	r.mu.Unlock()
	if onCall != nil {
		onCall(line)
	}
	if failing && (f.match == nil || f.match(strs)) {
		return f.err
	}
	return nil
}

// Calls returns the calls logged so far.
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Called reports whether a call starting with prefix was logged.
func (r *Recorder) Called(prefix string) bool {
	return slices.ContainsFunc(r.Calls(), func(c string) bool { return strings.HasPrefix(c, prefix) })
}

// Count returns how many calls starting with prefix were logged.
func (r *Recorder) Count(prefix string) int {
	n := 0
	for _, c := range r.Calls() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// Reset forgets the calls logged so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// Events keeps the lifecycle events a manager sent, as lines, from any
// goroutine (exits and pause ends are recorded by watches).
type Events struct {
	mu sync.Mutex
	ev []string
}

// Add records an event.
func (e *Events) Add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, fmt.Sprintf(format, args...))
}

// All returns the events recorded so far.
func (e *Events) All() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ev)
}

// Reset forgets them.
func (e *Events) Reset() {
	e.mu.Lock()
	e.ev = nil
	e.mu.Unlock()
}
