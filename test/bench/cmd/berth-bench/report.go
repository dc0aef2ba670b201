package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-cri/berth/test/bench/internal/report"
)

// critestDirs collects -critest NAME=DIR flags.
type critestDirs []string

func (c *critestDirs) String() string     { return strings.Join(*c, ",") }
func (c *critestDirs) Set(v string) error { *c = append(*c, v); return nil }

// reportCmd adds critest's benchmark summaries to a results.json and
// renders results.md again.
func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	results := fs.String("results", "bench/results.json", "results of berth-bench run")
	var dirs critestDirs
	fs.Var(&dirs, "critest", "NAME=DIR: a runtime's run-critest.sh -benchmark report dir (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := report.Load(*results)
	if err != nil {
		return err
	}
	res.Critest = nil
	for _, d := range dirs {
		name, dir, ok := strings.Cut(d, "=")
		if !ok {
			return fmt.Errorf("-critest %q: want NAME=DIR", d)
		}
		res.Critest = append(res.Critest, readCritest(name, dir))
	}
	res.Finish()
	if err := res.WriteJSON(*results); err != nil {
		return err
	}
	return res.WriteMarkdown(mdPath(*results))
}

// readCritest reads what hack/bench.sh and run-critest.sh left in dir:
// status (how the run ended), run.log (run-critest.sh's output, ending with
// its summary line) and benchmark-summary.txt (benchsummary's table).
// Missing files are said so.
func readCritest(name, dir string) report.Critest {
	c := report.Critest{Runtime: name}
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		c.Status = strings.TrimSpace(string(b))
	} else {
		c.Status = "not run"
	}
	c.Summary = lastLine(filepath.Join(dir, "run.log"), "critest:")
	if c.Summary == "" {
		c.Summary = "(no critest summary line)"
	}
	if b, err := os.ReadFile(filepath.Join(dir, "benchmark-summary.txt")); err == nil {
		c.Table = string(b)
	} else {
		c.Table = "(no benchmark summary: " + err.Error() + ")"
	}
	return c
}

// lastLine is the last line of path starting with prefix.
func lastLine(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			last = sc.Text()
		}
	}
	return last
}
