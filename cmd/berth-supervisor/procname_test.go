package main

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSetProcessNameFromAnotherThread: the name is the process's even when
// set from a thread other than its first (where prctl would name only that
// thread).
func TestSetProcessNameFromAnotherThread(t *testing.T) {
	old, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { setProcessName(strings.TrimSpace(string(old))) })
	done := make(chan int)
	var try func()
	try = func() {
		// Locked and never unlocked: the thread ends with the goroutine,
		// and a second try cannot land on it again.
		runtime.LockOSThread()
		if unix.Gettid() == os.Getpid() {
			go try()
			return
		}
		setProcessName("berth-nametest")
		done <- unix.Gettid()
	}
	go try()
	tid := <-done
	got, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "berth-nametest" {
		t.Errorf("/proc/self/comm = %q after setting the name from thread %d", got, tid)
	}
}
