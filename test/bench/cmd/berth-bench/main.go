// Command berth-bench benchmarks CRI runtimes side by side through kubelet's
// CRI client. hack/bench.sh (make bench) starts the runtimes and calls it:
//
//	berth-bench image  -ref REF -cache DIR              build and push the pull image once
//	berth-bench run    -targets FILE -out results.json  run the workloads, write json + md
//	berth-bench report -results results.json -critest NAME=DIR...   add critest's view
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "image":
		err = imageCmd(ctx, os.Args[2:])
	case "run":
		err = runCmd(ctx, os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "berth-bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: berth-bench image|run|report [flags]  (-h for a command's flags)")
	os.Exit(2)
}
