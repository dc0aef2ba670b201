package exec

import (
	"os"
	"testing"
	"time"
)

// TestDrainReadyKeepsPipedOutput pins a bug found under load (100
// concurrent ExecSyncs on a busy node): when the readers had not run before
// the drain grace ended, the read deadline made them fail without reading
// what the exited process had written, and ExecSync answered exit 0 with
// empty output. drainReady takes what the pipe holds, without waiting.
func TestDrainReadyKeepsPipedOutput(t *testing.T) {
	for _, tc := range []struct {
		name        string
		closeWriter bool // false: a leftover child still holds the write end
		budget      int
		want        string
	}{
		{"writer gone", true, 100, "probe ok\n"},
		{"writer still open", false, 100, "probe ok\n"},
		{"over budget", true, 5, "probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			w.WriteString("probe ok\n")
			if tc.closeWriter {
				w.Close()
			}
			// As Sync does once the grace is over.
			r.SetReadDeadline(time.Now())
			c := &capped{left: tc.budget}
			var got []byte
			done := make(chan struct{})
			go func() { c.drainReady(&got, r); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("drainReady waited for more output")
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
