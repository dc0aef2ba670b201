package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/multilayer"
)

// defaultPullImage is the pull benchmark's image in the test registry.
const defaultPullImage = "127.0.0.1:5000/berth-bench/multilayer:5x40"

func imageCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	ref := fs.String("ref", defaultPullImage, "where to push the image")
	cache := fs.String("cache", "/var/cache/berth-bench", "directory of the built layers, kept between runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t0 := time.Now()
	digest, pushed, err := multilayer.Ensure(ctx, *ref, multilayer.Default, *cache)
	if err != nil {
		return err
	}
	what := "already in the registry"
	if pushed {
		what = fmt.Sprintf("built and pushed in %.1fs", time.Since(t0).Seconds())
	}
	fmt.Printf("berth-bench: %s@%s %s\n", *ref, digest, what)
	return nil
}
