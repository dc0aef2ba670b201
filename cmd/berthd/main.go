// Command berthd is the Berth CRI runtime daemon.
//
//	berthd [--config FILE]                  serve the CRI
//	berthd config default                   print the embedded default config
//	berthd config check [--config FILE]     validate and print the effective config
//	berthd prepare-state-dir [--config FILE] put state_dir on a tmpfs (before socket activation binds in it)
//	berthd --version                        print the version
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/BurntSushi/toml"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/fault"
	"github.com/berth-cri/berth/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "config" {
		return configCommand(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "prepare-state-dir" {
		return prepareStateDirCommand(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default "+config.DefaultPath+" if it exists, else the embedded defaults)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "berthd %s", version.Version)
		if version.Revision != "" {
			fmt.Fprintf(stdout, " (%s)", version.Revision)
		}
		fmt.Fprintf(stdout, " CRI %s\n", version.CRIAPIVersion)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "berthd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// A crash test against a berthd without fault points must fail, not
	// pass without a crash.
	if err := fault.Check(); err != nil {
		fmt.Fprintf(stderr, "berthd: %v\n", err)
		return 1
	}
	loaded, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "berthd: %v\n", err)
		return 1
	}
	if err := serve(*configPath, loaded); err != nil {
		fmt.Fprintf(stderr, "berthd: %v\n", err)
		return 1
	}
	return 0
}

func configCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: berthd config default | berthd config check [--config FILE]")
		return 2
	}
	switch args[0] {
	case "default":
		fmt.Fprint(stdout, configv1.DefaultTOML)
		return 0
	case "check":
		fs := flag.NewFlagSet("berthd config check", flag.ContinueOnError)
		fs.SetOutput(stderr)
		configPath := fs.String("config", "", "config file to check")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		loaded, err := config.Load(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "berthd: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "# effective config, merged from: %s", config.DefaultSource)
		for _, f := range loaded.Files {
			fmt.Fprintf(stdout, ", %s", f)
		}
		fmt.Fprintln(stdout)
		if err := toml.NewEncoder(stdout).Encode(loaded.Config); err != nil {
			fmt.Fprintf(stderr, "berthd: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "berthd: unknown config command %q\n", args[0])
	return 2
}
