//go:build faultinject

package fault

import (
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether the fault points are compiled in.
const Enabled = true

// armed is the one point this process dies at, parsed once from the
// environment; it is never written after package initialisation, so reading
// it needs no lock. An unarmed process has armed.name == "".
var armed = parse(take())

// take reads BERTH_FAULT and, when set, removes it from the environment:
// the fault is meant for this process, not for the supervisor or the
// processes it starts, which would otherwise inherit it (the supervisor
// writes its exit records through atomicfile too). When unset, as in
// production, nothing is changed.
func take() string {
	v, ok := os.LookupEnv(EnvVar)
	if ok {
		os.Unsetenv(EnvVar)
	}
	return v
}

type trigger struct {
	name string
	nth  int64 // die at this hit, counting from 1
	hits atomic.Int64
}

// parse reads "name" or "name@N"; anything unparsable disarms (a typo in a
// test must not kill a daemon at a point nobody meant).
func parse(v string) *trigger {
	name, n, found := strings.Cut(v, "@")
	t := &trigger{name: name, nth: 1}
	if found {
		nth, err := strconv.ParseInt(n, 10, 64)
		if err != nil || nth < 1 {
			return &trigger{}
		}
		t.nth = nth
	}
	return t
}

// Point kills the process if BERTH_FAULT names this point and this is the
// hit it asked for.
func Point(name string) {
	if name != armed.name {
		return
	}
	armed.hit()
}

func (t *trigger) hit() {
	if t.hits.Add(1) == t.nth {
		kill()
	}
}

// kill is SIGKILL to ourselves; it does not return.
func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered asynchronously
}

// Reader returns r, made to call Point(name) once its first bytes have been
// read: a point in the middle of a stream (a layer download). When name is
// not armed it returns r itself.
func Reader(name string, r io.Reader) io.Reader {
	if name != armed.name {
		return r
	}
	return &pointReader{r: r, name: name}
}

type pointReader struct {
	r    io.Reader
	name string
	read bool
}

func (p *pointReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 && !p.read {
		p.read = true
		Point(p.name)
	}
	return n, err
}
