//go:build !faultinject

package fault

import "io"

// Enabled reports whether the fault points are compiled in.
const Enabled = false

// Point does nothing without the faultinject tag.
func Point(string) {}

// Reader returns r without the faultinject tag.
func Reader(_ string, r io.Reader) io.Reader { return r }
