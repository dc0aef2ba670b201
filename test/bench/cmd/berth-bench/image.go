package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/berth-cri/berth/test/bench/internal/multilayer"
)

// The pull benchmark's images in the test registry: the multi-layer one
// of pull-cold, and the large single-layer and 100-layer ones of
// pull-large and pull-layers.
const (
	defaultPullImage   = "127.0.0.1:5000/berth-bench/multilayer:5x40"
	defaultLargeImage  = "127.0.0.1:5000/berth-bench/large:1x1024"
	defaultLayersImage = "127.0.0.1:5000/berth-bench/layers:100x1"
)

func imageCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	ref := fs.String("ref", defaultPullImage, "where to push the multi-layer image")
	large := fs.String("large", defaultLargeImage, "where to push the 1 GiB single-layer image (empty: not built)")
	layers := fs.String("layers", defaultLayersImage, "where to push the 100-layer image (empty: not built)")
	cache := fs.String("cache", "/var/cache/berth-bench", "directory of the built layers, kept between runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, img := range []struct {
		ref   string
		shape multilayer.Shape
	}{{*ref, multilayer.Default}, {*large, multilayer.Large}, {*layers, multilayer.Layers100}} {
		if img.ref == "" {
			continue
		}
		t0 := time.Now()
		digest, pushed, err := multilayer.Ensure(ctx, img.ref, img.shape, *cache)
		if err != nil {
			return err
		}
		what := "already in the registry"
		if pushed {
			what = fmt.Sprintf("built and pushed in %.1fs", time.Since(t0).Seconds())
		}
		fmt.Printf("berth-bench: %s@%s %s\n", img.ref, digest, what)
	}
	return nil
}
