package image

import (
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-cri/berth/internal/metrics"
)

func TestPullMetrics(t *testing.T) {
	reg := newTestRegistry(t)
	good := imageOf(t, "", layerOf(t, tarOf(t, map[string]string{"a": "1"}), "gzip"), layerOf(t, tarOf(t, map[string]string{"b": "2"}), "zstd"))
	reg.push(t, "app:v1", good)
	bad := layerOf(t, tarOf(t, map[string]string{"bad": "x"}), "none")
	reg.push(t, "corrupt:1", imageOf(t, "", bad))
	d, _ := bad.Digest()
	reg.setCorrupt(d)
	m := metrics.New()
	e := newTestEnv(t, reg, func(o *Options) { fixedPlatform(o); o.Metrics = m })

	var layerBytes float64
	for _, l := range mustLayers(t, good) {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		layerBytes += float64(n)
	}
	e.pull(t, reg.ref("app:v1"))
	if got := value(t, m, "berth_image_pull_bytes_total", ""); got != layerBytes {
		t.Fatalf("pull bytes %v, want the compressed layer sizes %v", got, layerBytes)
	}
	// A re-pull moves no layer byte but is still a pull.
	e.pull(t, reg.ref("app:v1"))
	if got := value(t, m, "berth_image_pull_bytes_total", ""); got != layerBytes {
		t.Errorf("pull bytes after a re-pull %v, want still %v", got, layerBytes)
	}
	if _, err := e.svc.Pull(context.Background(), reg.ref("corrupt:1"), nil, ""); err == nil {
		t.Fatal("corrupt pull succeeded")
	}
	if got := value(t, m, "berth_image_pull_duration_seconds", metrics.PullSuccess); got != 2 {
		t.Errorf("%v successful pulls observed, want 2", got)
	}
	if got := value(t, m, "berth_image_pull_duration_seconds", metrics.PullFailure); got != 1 {
		t.Errorf("%v failed pulls observed, want 1", got)
	}
}

func mustLayers(t *testing.T, img v1.Image) []v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// value is counter name's value, or histogram name's sample count for the
// series whose result label is result.
func value(t *testing.T, m *metrics.Metrics, name, result string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.Metric {
			if s.Counter != nil {
				return s.Counter.GetValue()
			}
			for _, lp := range s.Label {
				if lp.GetName() == "result" && lp.GetValue() == result {
					return float64(s.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}
