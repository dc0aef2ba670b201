package report

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where the figures were measured: they mean little
// without it.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Cgroups  string `json:"cgroups"`
	// Load is /proc/loadavg at the start and the end of the run: other
	// work on the machine makes every figure noisier.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end,omitempty"`
	// Load1Mean and Load1Max are the 1-minute load average sampled during
	// the workloads: above the CPU count, other work competed for them.
	Load1Mean float64 `json:"load1_mean,omitempty"`
	Load1Max  float64 `json:"load1_max,omitempty"`
	// ExecMs and HashMBps are the machine's own speed, measured at the
	// start while the runtimes are idle: the median time to run /bin/true
	// from Go (fork, exec, wait) and SHA-256 throughput on one core. The
	// same VM size has been 2-4x apart from one day to the next here
	// (kernel work more than arithmetic), so runs compare only when these
	// agree.
	ExecMs   float64 `json:"exec_ms,omitempty"`
	HashMBps float64 `json:"hash_mbps,omitempty"`
}

// WatchLoad samples the 1-minute load average every period until ctx ends
// or the returned function is called, which returns the samples' mean and
// maximum.
func WatchLoad(ctx context.Context, period time.Duration) func() (mean, max float64) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var samples []float64
	sample := func() {
		if f := strings.Fields(LoadAverage()); len(f) > 0 {
			var v float64
			if _, err := fmt.Sscanf(f[0], "%g", &v); err == nil {
				samples = append(samples, v)
			}
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		sample()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() (float64, float64) {
		cancel()
		<-done
		sample()
		return loadSummary(samples)
	}
}

// loadSummary is the mean and maximum of load samples, 0 for none.
func loadSummary(samples []float64) (mean, max float64) {
	if len(samples) == 0 {
		return 0, 0
	}
	var sum float64
	for _, v := range samples {
		sum += v
		if v > max {
			max = v
		}
	}
	return sum / float64(len(samples)), max
}

// LoadAverage is the 1, 5 and 15 minute load averages.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Describe reads the machine's description from the kernel and /etc, and
// measures its speed (speed: about half a second).
func Describe() Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	m.CPUModel = firstValue("/proc/cpuinfo", "model name")
	m.MemTotal = humanKiB(firstValue("/proc/meminfo", "MemTotal"))
	m.OS = strings.Trim(firstValue("/etc/os-release", "PRETTY_NAME"), `"`)
	m.Cgroups = cgroupMode()
	m.LoadStart = LoadAverage()
	m.ExecMs, m.HashMBps = speed()
	return m
}

// speedExecs is how many runs of /bin/true ExecMs is the median of.
const speedExecs = 41

// speed measures the machine's exec and hashing speed (Machine.ExecMs,
// HashMBps); a failed exec leaves ExecMs 0.
func speed() (execMs, hashMBps float64) {
	var ds []float64
	for range speedExecs {
		t0 := time.Now()
		if exec.Command("/bin/true").Run() != nil {
			break
		}
		ds = append(ds, float64(time.Since(t0).Microseconds())/1000)
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		execMs = ds[len(ds)/2]
	}
	buf := make([]byte, 16<<20)
	for range 3 {
		h := sha256.New()
		t0 := time.Now()
		for range 4 {
			h.Write(buf)
		}
		hashMBps = max(hashMBps, 64/time.Since(t0).Seconds())
	}
	return execMs, hashMBps
}

// humanKiB turns meminfo's "24684092 kB" into "23.5 GiB".
func humanKiB(s string) string {
	var kb float64
	if _, err := fmt.Sscanf(s, "%f kB", &kb); err != nil {
		return s
	}
	return fmt.Sprintf("%.1f GiB", kb/(1<<20))
}

// firstValue is the value of the first "key: value" or "key=value" line.
func firstValue(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, sep := range []string{":", "="} {
			k, v, ok := strings.Cut(line, sep)
			if ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// cgroupMode tells unified (v2), hybrid (v1 with an empty v2 beside) and
// legacy (v1) hierarchies apart, as runc does.
func cgroupMode() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) != nil {
		return "unknown"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2 (unified)"
	}
	if unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v1 (hybrid)"
	}
	return "v1 (legacy)"
}

// CommandOutput runs argv and returns the first line it prints, or the
// error as text: a version string must never stop a report.
func CommandOutput(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil && line == "" {
		return strings.Join(argv, " ") + ": " + err.Error()
	}
	return line
}
