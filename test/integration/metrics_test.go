package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

func scrape(t *testing.T, url string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

func TestMetricsEndpoint(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	d := harness.New(t, fmt.Sprintf("metrics_address = %q\n", addr))
	d.Start()
	if _, err := d.RuntimeClient().Version(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}

	// The interceptor records a call once it is answered: scrape until the
	// Version call shows (it does at once; the deadline covers a slow CI).
	versionCount := regexp.MustCompile(`(?m)^berth_cri_requests_total\{code="OK",method="/runtime\.v1\.RuntimeService/Version"\} (\d+)$`)
	var body string
	harness.WaitFor(t, "Version counted in /metrics", 10*time.Second, func() bool {
		var err error
		body, err = scrape(t, "http://"+addr+"/metrics")
		if err != nil {
			return false
		}
		m := versionCount.FindStringSubmatch(body)
		if m == nil {
			return false
		}
		n, _ := strconv.Atoi(m[1])
		return n >= 1
	})
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^berth_cri_request_duration_seconds_count\{method="/runtime\.v1\.RuntimeService/Version"\} [1-9]`),
		regexp.MustCompile(`(?m)^berth_image_pull_bytes_total 0$`),
		regexp.MustCompile(`(?m)^berth_container_starts_total 0$`),
		regexp.MustCompile(`(?m)^berth_supervisor_restarts_total 0$`),
		regexp.MustCompile(`(?m)^go_goroutines \d+`),
		regexp.MustCompile(`(?m)^process_resident_memory_bytes `),
	} {
		if !want.MatchString(body) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !d.Logs.Contains("serving metrics") {
		t.Errorf("berthd did not log the metrics address\n%s", d.Logs)
	}

	// berthd stops the endpoint when it stops.
	d.Stop()
	if _, err := scrape(t, "http://"+addr+"/metrics"); err == nil {
		t.Error("/metrics still answers after berthd stopped")
	}
}

// metricValue is the value of the sample line that starts with series
// (name and labels, as exposed), or -1 when there is none.
func metricValue(body, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// A pull moves bytes and is timed; a container start is counted.
func TestMetricsPullAndStart(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	d, reg, _ := newPodDaemon(t, fmt.Sprintf("metrics_address = %q\n", addr))
	d.Start()
	d.WaitReady()
	e := &podEnv{d: d, reg: reg, rt: d.RuntimeClient(), img: d.ImageClient(), podCfg: podConfig("metrics"), image: reg.Host + "/" + harness.BusyboxRepo}
	e.podCfg.LogDirectory = t.TempDir()
	ctx := context.Background()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, e.podCfg, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	e.pod = pod
	t.Cleanup(func() {
		e.rt.StopPodSandbox(context.Background(), pod)
		e.rt.RemovePodSandbox(context.Background(), pod)
	})
	e.waitExit(t, e.run(t, e.containerConfig("one", "/bin/true")))

	body, err := scrape(t, "http://"+addr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	// Bounds, not exact values, where the sandbox's pause pull may add to
	// what the test itself did.
	for _, c := range []struct {
		series   string
		min, max float64
	}{
		{"berth_image_pull_bytes_total", 1, math.Inf(1)},
		{`berth_image_pull_duration_seconds_count{result="success"}`, 1, 2},
		{"berth_container_starts_total", 1, 1},
		{`berth_cri_requests_total{code="OK",method="/runtime.v1.ImageService/PullImage"}`, 1, 1},
		{`berth_cri_requests_total{code="OK",method="/runtime.v1.RuntimeService/StartContainer"}`, 1, 1},
	} {
		if v := metricValue(body, c.series); v < c.min || v > c.max {
			t.Errorf("%s = %v, want %v to %v", c.series, v, c.min, c.max)
		}
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	d := harness.New(t, "")
	d.Start()
	if d.Logs.Contains("serving metrics") {
		t.Errorf("berthd serves metrics without metrics_address\n%s", d.Logs)
	}
}
