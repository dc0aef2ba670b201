package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/berth-cri/berth/test/bench/internal/workload"
)

// WriteMarkdown renders r as results.md.
func (r *Results) WriteMarkdown(path string) error {
	var b strings.Builder
	r.markdown(&b)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (r *Results) markdown(w io.Writer) {
	names := make([]string, len(r.Runtimes))
	for i, rt := range r.Runtimes {
		names[i] = rt.Name
	}
	fmt.Fprintf(w, "# CRI benchmark: %s\n\n", strings.Join(names, " vs "))
	fmt.Fprintf(w, "Measured by `make bench` on %s (%s mode, %s).\n\n", r.Date.Format("2006-01-02 15:04 MST"), r.Mode, r.Duration)

	r.howToRead(w, names)
	r.unavailable(w)
	r.tables(w, names)
	r.notes(w)
	r.critest(w)
	r.timeSpent(w, names)
	r.setup(w)
}

// timeSpent is the wall time each workload took each runtime, with the
// totals: which runtime's rounds make the run as long as it is.
func (r *Results) timeSpent(w io.Writer, names []string) {
	totals := make([]float64, len(names))
	var rows []string
	for _, wl := range r.Workloads {
		if len(wl.Seconds) == 0 {
			continue
		}
		cells := make([]string, len(names))
		for i, n := range names {
			sec, ok := wl.Seconds[n]
			if !ok {
				cells[i] = "–"
				continue
			}
			totals[i] += sec
			cells[i] = fmt.Sprintf("%.0f", sec)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s |", wl.Name, strings.Join(cells, " | ")))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "## Where the run's time went")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Wall time of each workload against each runtime, every round with its setup and teardown, in seconds")
	fmt.Fprintln(w, "(the run's own set-up, critest and clean-up are outside it).")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| workload | %s |\n", strings.Join(names, " | "))
	fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" ---: |", len(names)))
	for _, row := range rows {
		fmt.Fprintln(w, row)
	}
	cells := make([]string, len(names))
	for i, t := range totals {
		cells[i] = fmt.Sprintf("**%.0f** (%.1f min)", t, t/60)
	}
	fmt.Fprintf(w, "| **all** | %s |\n\n", strings.Join(cells, " | "))
}

func (r *Results) howToRead(w io.Writer, names []string) {
	fmt.Fprintf(w, `## How to read this

Every figure is a cost: lower is better. Each runtime ran the same workloads through the CRI (kubelet's
own client, k8s.io/cri-client), one after the other on the same machine, alternating in rounds, with
the other runtimes idle. "median", "p95" and "p99" are over all samples of all rounds (n per runtime in
the last column; with few samples p99 is close to the maximum). %s compares %s with its best peer
for that figure: the ratio of %[2]s's median to the lowest median of the other runtimes, whose name
follows (below 1: %[2]s is cheaper). Where a figure has a floor (the physical limit under it, measured
in the same run: exec of /bin/true in the container's namespaces for ExecSync, the registry's blobs read,
decompressed on one core and written as files for a pull, the CNI plugin chain's own ADD/DEL for a
sandbox), it is the row below it, and %[3]s is %[2]s's median over its floor's. A figure marked *skipped*
is one the runtime answers with Unimplemented; *partial* or *failed* ones are explained under Notes; an
*unavailable* runtime is one that could not be built or started (why: under Runtimes not measured).
Latencies include the gRPC round trip over the unix socket. Memory figures are from /proc: RSS of the
runtime's own processes (the daemon, plus containerd's shims or berth's supervisor), not of the pods'
processes; PSS splits shared pages (the shim binary's text) among the processes using them. The
"bytes read" figures are the daemon's rchar: the cold pull's shows the layers were really fetched, the
re-pull's that no layer moved. Nothing here is asserted; a slow or busy machine makes every number
larger (the load average is under Machine), so compare the runtimes with each other, not with other
machines.

`, "`"+bestPeerColumn(names)+"`", names[0], "`"+floorColumn(names)+"`")
}

// bestPeerColumn and floorColumn are the two ratio columns' names.
func bestPeerColumn(names []string) string { return names[0] + " ÷ best peer" }
func floorColumn(names []string) string    { return names[0] + " ÷ floor" }

func (r *Results) tables(w io.Writer, names []string) {
	fmt.Fprintln(w, "## Results")
	fmt.Fprintln(w)
	for _, wl := range r.Workloads {
		if wl.FloorOf != nil {
			r.floor(w, wl)
			continue
		}
		fmt.Fprintf(w, "### %s\n\n%s (%d round(s) per runtime).\n\n", wl.Name, upperFirst(wl.Description), wl.Rounds)
		writeTable(w, names, wl)
		fmt.Fprintln(w)
	}
}

// writeTable writes one workload's table: median, p95 and p99 of each
// runtime, the first runtime over its best peer, over its floor when a
// figure of the workload has one, and the sample counts.
func writeTable(w io.Writer, names []string, wl WorkloadResult) {
	floors := false
	for _, f := range wl.Figures {
		floors = floors || f.Floor != ""
	}
	var head, rule strings.Builder
	head.WriteString("| figure | unit |")
	rule.WriteString("| --- | --- |")
	for _, n := range names {
		fmt.Fprintf(&head, " %s median | p95 | p99 |", n)
		rule.WriteString(" ---: | ---: | ---: |")
	}
	if len(names) >= 2 {
		fmt.Fprintf(&head, " %s |", bestPeerColumn(names))
		rule.WriteString(" ---: |")
	}
	if floors {
		fmt.Fprintf(&head, " %s |", floorColumn(names))
		rule.WriteString(" ---: |")
	}
	head.WriteString(" n |")
	rule.WriteString(" --- |")
	fmt.Fprintln(w, head.String())
	fmt.Fprintln(w, rule.String())
	for _, f := range wl.Figures {
		title := mdEscape(strings.TrimSpace(f.Title))
		if strings.HasPrefix(f.Title, "  ") {
			// A sub-figure (indented title): a part of the figure above.
			title = "↳ " + title
		}
		fmt.Fprintf(w, "| %s | %s |", title, f.Unit)
		var ns []string
		for _, o := range f.Outcomes {
			if o.Summary != nil {
				fmt.Fprintf(w, " %s | %s | %s |", num(o.Summary.Median), num(o.Summary.P95), num(o.Summary.P99))
				ns = append(ns, fmt.Sprint(o.Summary.N))
			} else {
				fmt.Fprintf(w, " %s | | |", o.Status)
				ns = append(ns, "0")
			}
		}
		if len(names) >= 2 {
			ratio := "–"
			if f.Ratio != nil {
				ratio = fmt.Sprintf("%s (%s)", ratioString(f.Ratio.Median), f.Ratio.Peer)
			}
			fmt.Fprintf(w, " %s |", ratio)
		}
		if floors {
			ratio := "–"
			if len(names) > 0 {
				if fr := floorRatioOf(f.FloorRatios, names[0]); fr != nil {
					ratio = ratioString(fr.Median)
				}
			}
			fmt.Fprintf(w, " %s |", ratio)
		}
		fmt.Fprintf(w, " %s |\n", strings.Join(ns, "/"))
	}
}

// floor renders a floor workload: its figures for the runtimes it applies
// to, the figure it is the floor of and their ratio, and the paces kept.
func (r *Results) floor(w io.Writer, wl WorkloadResult) {
	fl := wl.FloorOf
	fmt.Fprintf(w, "### %s\n\n%s (%d round(s) per runtime).\n\n", wl.Name, upperFirst(wl.Description), wl.Rounds)
	var names, na []string // the runtimes it applies to, and not
	if len(wl.Figures) > 0 {
		for _, o := range wl.Figures[0].Outcomes {
			if o.Status == StatusNA {
				na = append(na, o.Runtime)
			} else {
				names = append(names, o.Runtime)
			}
		}
	}
	var pace string
	switch p := r.Config.FloorPeriod; p {
	case workload.AutoPeriod:
		pace = fmt.Sprintf("one create per %s cycle of the same runtime in this run (its median), or one every %s if %[1]s did not run", fl.Workload, workload.DefaultPace)
	case "0", "0s":
		pace = fmt.Sprintf("back to back (BENCH_FLOOR_PERIOD=0), unlike %s", fl.Workload)
	default:
		pace = fmt.Sprintf("one create every %s (BENCH_FLOOR_PERIOD)", p)
	}
	above := r.figure(fl.Workload, fl.Figure)
	fmt.Fprintf(w, `The floor is what nothing can beat with the same spec: test/bench/cmd/libcontainer-floor runs
runc's libcontainer in-process, from a sealed copy of its binary, as berth's supervisor does, on the
OCI spec (config.json) the runtime wrote for a container made like %[1]s's, in a pod of its
own that stays up. Rootfs, namespaces (the pod's, joined), mounts, masked paths, seccomp,
capabilities, devices and process are the runtime's; only the container id, its cgroup
(/berth-floor/ID) and its stdio (/dev/null) differ; libcontainer's state goes where the runtime keeps
its own (floor_dir in targets.json: berth's state dir). *Create* is libcontainer Create + Start (the init
set up and waiting on its exec fifo, as after CreateContainer), *start* is Exec (as StartContainer);
no RPC, no image or rootfs work, no bookkeeping. Pace: %[2]s; the first create of each round is
an unmeasured warm-up. The floor is paced because a create may cost more after a quiet spell than
right after another (on cgroup v1, moving a process into a cgroup can wait for an RCU grace period):
a back-to-back loop could report a floor that real use never sees.
`, fl.Workload, pace)
	if above != nil {
		fmt.Fprintf(w, "The bold row is %s's CreateContainer+StartContainer, per cycle, over this floor.\n", fl.Workload)
	}
	fmt.Fprintln(w)
	var head, rule strings.Builder
	head.WriteString("| figure | unit |")
	rule.WriteString("| --- | --- |")
	for _, n := range names {
		fmt.Fprintf(&head, " %s median | %s p95 |", n, n)
		rule.WriteString(" ---: | ---: |")
	}
	head.WriteString(" n |")
	rule.WriteString(" --- |")
	fmt.Fprintln(w, head.String())
	fmt.Fprintln(w, rule.String())
	row := func(title string, f *FigureResult) {
		fmt.Fprintf(w, "| %s | %s |", mdEscape(title), f.Unit)
		var ns []string
		for _, rt := range names {
			o := outcomeOf(f, rt)
			switch {
			case o != nil && o.Summary != nil:
				fmt.Fprintf(w, " %s | %s |", num(o.Summary.Median), num(o.Summary.P95))
				ns = append(ns, fmt.Sprint(o.Summary.N))
			case o != nil:
				fmt.Fprintf(w, " %s | |", o.Status)
				ns = append(ns, "0")
			default:
				fmt.Fprint(w, " not run | |")
				ns = append(ns, "0")
			}
		}
		fmt.Fprintf(w, " %s |\n", strings.Join(ns, "/"))
	}
	var interval *FigureResult
	for i := range wl.Figures {
		f := &wl.Figures[i]
		title := strings.TrimSpace(f.Title)
		switch {
		case f.ID == workload.FloorInterval:
			interval = f
			continue
		case strings.HasPrefix(f.Title, "  "):
			title = "↳ " + title
		}
		row(title, f)
	}
	if above != nil {
		title := fmt.Sprintf("%s (%s)", strings.TrimSpace(above.Title), fl.Workload)
		row(title, above)
		fmt.Fprintf(w, "| **%s / floor** | × |", mdEscape(title))
		for _, rt := range names {
			if fr := floorRatioOf(wl.FloorRatios, rt); fr != nil {
				fmt.Fprintf(w, " **%s** | %s |", ratioString(fr.Median), ratioString(fr.P95))
			} else {
				fmt.Fprint(w, " – | |")
			}
		}
		fmt.Fprintln(w, " |")
	}
	if interval != nil {
		row(strings.TrimSpace(interval.Title), interval)
	}
	if f := r.figure(fl.Workload, fl.Pace); f != nil {
		row(fmt.Sprintf("%s (%s's pace)", strings.TrimSpace(f.Title), fl.Workload), f)
	}
	if above == nil {
		fmt.Fprintf(w, "\n%s did not run: no ratio to the floor.\n", fl.Workload)
	}
	if len(na) > 0 {
		fmt.Fprintf(w, "\nNot measured for %s: no spec_path in targets.json.\n", strings.Join(na, ", "))
	}
	fmt.Fprintln(w)
}

func floorRatioOf(rs []FloorRatio, runtime string) *FloorRatio {
	for i := range rs {
		if rs[i].Runtime == runtime {
			return &rs[i]
		}
	}
	return nil
}

// unavailable says which runtimes could not be built or started, and why.
func (r *Results) unavailable(w io.Writer) {
	var lines []string
	for _, rt := range r.Runtimes {
		if rt.Unavailable != "" {
			lines = append(lines, fmt.Sprintf("- **%s**: %s", rt.Name, rt.Unavailable))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "## Runtimes not measured\n\n%s\n\n", strings.Join(lines, "\n"))
	}
}

// notes lists, once per workload and runtime, why figures are missing.
func (r *Results) notes(w io.Writer) {
	var lines []string
	for _, wl := range r.Workloads {
		seen := map[string]bool{}
		for _, f := range wl.Figures {
			for _, o := range f.Outcomes {
				if o.Note == "" || o.Status == StatusNA || o.Status == StatusUnavailable || seen[o.Runtime+o.Note] {
					continue
				}
				seen[o.Runtime+o.Note] = true
				lines = append(lines, fmt.Sprintf("- **%s**, %s: %s: %s", wl.Name, o.Runtime, o.Status, o.Note))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "## Notes\n\n%s\n\n", strings.Join(lines, "\n"))
}

func (r *Results) critest(w io.Writer) {
	if len(r.Critest) == 0 {
		return
	}
	fmt.Fprintln(w, "## critest -benchmark (second view)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "critest's own benchmarks (`../shared/cri-harness/run-critest.sh ENDPOINT -benchmark`,")
	fmt.Fprintln(w, "benchmark-params.yaml: 50 pods, 50 containers, 20 pulls of the 45 MB harness image, sequential),")
	fmt.Fprintln(w, "summed up by the harness's benchsummary. Times in ms.")
	fmt.Fprintln(w)
	for _, c := range r.Critest {
		fmt.Fprintf(w, "### %s\n\n%s. %s\n\n```\n%s\n```\n\n", c.Runtime, upperFirst(c.Status), c.Summary, strings.TrimRight(c.Table, "\n"))
	}
}

func (r *Results) setup(w io.Writer) {
	m := r.Machine
	fmt.Fprintln(w, "## Machine and versions")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- %d CPUs (%s), memory %s, kernel %s, %s, cgroups %s\n", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.OS, m.Cgroups)
	if m.LoadStart != "" {
		fmt.Fprintf(w, "- load average (1, 5, 15 min) at the start: %s; at the end of the workloads: %s\n", m.LoadStart, m.LoadEnd)
	}
	if m.Load1Max > 0 {
		fmt.Fprintf(w, "- 1-minute load average during the workloads: mean %.1f, max %.1f", m.Load1Mean, m.Load1Max)
		if m.Load1Max > float64(m.CPUs) {
			fmt.Fprintf(w, " for %d CPUs: the CPUs were saturated at times (the node-scale workloads do it themselves, the slower runtimes with 100 and more processes at once; other work may have too), so latencies are noisier and CPU-bound figures larger than on an idle node", m.CPUs)
		}
		fmt.Fprintln(w)
	}
	if m.ExecMs > 0 {
		fmt.Fprintf(w, "- machine speed at the start, the runtimes idle: /bin/true run from Go (fork, exec, wait) %.2f ms (median of %d), SHA-256 on one core %.0f MB/s; figures of runs on other days compare only when these agree\n", m.ExecMs, speedExecs, m.HashMBps)
	}
	for _, rt := range r.Runtimes {
		if rt.Unavailable != "" {
			fmt.Fprintf(w, "- %s: unavailable (%s)\n", rt.Name, rt.Unavailable)
			continue
		}
		fmt.Fprintf(w, "- %s (`%s`): CRI Version says %s", rt.Name, rt.Endpoint, rt.CRI)
		for _, v := range rt.Versions {
			fmt.Fprintf(w, "; `%s`", v)
		}
		fmt.Fprintln(w)
	}
	c := r.Config
	fmt.Fprintf(w, "- workloads: %d rounds, %d samples per small-operation figure, %d cold pulls, %d pods at once, %d pods for memory\n",
		c.Rounds, c.Samples, c.ColdPulls, c.ParallelPods, c.MemoryPods)
	fmt.Fprintf(w, "- node scale: %d pods started %d at a time, held %s, running at the lists and the restart; %d cold pull(s) of each large image\n",
		c.BurstPods, c.BurstInFlight, c.BurstHold, c.LargePulls)
	fmt.Fprintf(w, "- images: pull `%s`, large `%s`, layers `%s`, containers `%s`, sandbox `%s`\n", c.PullImage, c.LargeImage, c.LayersImage, c.Image, c.SandboxImage)
}

// num prints 3 significant digits or so: more would be noise.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratioString keeps two significant digits of small ratios (0.0007, not 0.00).
func ratioString(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.2g", r)
	}
	return fmt.Sprintf("%.2f", r)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
