package exec

import "runtime"

func runtimeGoroutines() int { return runtime.NumGoroutine() }
