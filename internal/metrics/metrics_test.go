package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
)

func TestRecord(t *testing.T) {
	const version = "/runtime.v1.RuntimeService/Version"
	for _, tc := range []struct {
		name   string
		record func(m *Metrics)
		check  func(t *testing.T, m *Metrics)
	}{
		{"cri request counted by method and code, latency observed", func(m *Metrics) {
			m.CRIRequest(version, "OK", time.Millisecond)
			m.CRIRequest(version, "OK", 2*time.Millisecond)
			m.CRIRequest(version, "Unavailable", time.Millisecond)
		}, func(t *testing.T, m *Metrics) {
			if got := testutil.ToFloat64(m.criRequests.WithLabelValues(version, "OK")); got != 2 {
				t.Errorf("OK count %v, want 2", got)
			}
			if got := testutil.ToFloat64(m.criRequests.WithLabelValues(version, "Unavailable")); got != 1 {
				t.Errorf("Unavailable count %v, want 1", got)
			}
			if n, s := histogram(t, m, "berth_cri_request_duration_seconds"); n != 3 || s < .004 || s > .0041 {
				t.Errorf("histogram count %d sum %v, want 3 and 0.004", n, s)
			}
		}},
		{"pull bytes add up, empty adds ignored", func(m *Metrics) {
			m.ImagePullBytes(1000)
			m.ImagePullBytes(0)
			m.ImagePullBytes(24)
		}, func(t *testing.T, m *Metrics) {
			if got := testutil.ToFloat64(m.pullBytes); got != 1024 {
				t.Errorf("pull bytes %v, want 1024", got)
			}
		}},
		{"pull durations by result", func(m *Metrics) {
			m.ImagePulled(time.Second, nil)
			m.ImagePulled(time.Second, errors.New("boom"))
			m.ImagePulled(time.Second, errors.New("boom"))
		}, func(t *testing.T, m *Metrics) {
			for result, want := range map[string]int{PullSuccess: 1, PullFailure: 2} {
				if n := sampleCount(t, m, "berth_image_pull_duration_seconds", "result", result); n != uint64(want) {
					t.Errorf("%s pulls %d, want %d", result, n, want)
				}
			}
		}},
		{"container starts and supervisor restarts", func(m *Metrics) {
			m.ContainerStarted()
			m.ContainerStarted()
			m.SupervisorRestarted()
		}, func(t *testing.T, m *Metrics) {
			if got := testutil.ToFloat64(m.containerStarts); got != 2 {
				t.Errorf("container starts %v, want 2", got)
			}
			if got := testutil.ToFloat64(m.supervisorRestarts); got != 1 {
				t.Errorf("supervisor restarts %v, want 1", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			tc.record(m)
			tc.check(t, m)
		})
	}
}

// histogram returns the sample count and sum of the only series of name.
func histogram(t *testing.T, m *Metrics, name string) (uint64, float64) {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.Metric) != 1 {
				t.Fatalf("%s has %d series, want 1", name, len(mf.Metric))
			}
			h := mf.Metric[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no %s gathered", name)
	return 0, 0
}

// sampleCount is the sample count of histogram name's series with label=value.
func sampleCount(t *testing.T, m *Metrics, name, label, value string) uint64 {
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
			for _, lp := range s.Label {
				if lp.GetName() == label && lp.GetValue() == value {
					return s.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.CRIRequest("/x", "OK", time.Second)
	m.ImagePullBytes(1)
	m.ImagePulled(time.Second, nil)
	m.ContainerStarted()
	m.SupervisorRestarted()
	if _, err := m.Gatherer().Gather(); err != nil {
		t.Fatal(err)
	}
	if m.Handler() == nil {
		t.Fatal("nil handler")
	}
}

func TestServe(t *testing.T) {
	m := New()
	m.CRIRequest("/runtime.v1.RuntimeService/Version", "OK", time.Millisecond)
	m.ContainerStarted()
	s, err := Serve("127.0.0.1:0", m, logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())

	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v %v", resp.Status, err)
	}
	for _, want := range []string{
		`berth_cri_requests_total{code="OK",method="/runtime.v1.RuntimeService/Version"} 1`,
		`berth_cri_request_duration_seconds_count{method="/runtime.v1.RuntimeService/Version"} 1`,
		"berth_container_starts_total 1",
		"berth_image_pull_bytes_total 0",
		"berth_supervisor_restarts_total 0",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	if _, err := Serve(s.Addr().String(), m, logrus.New()); err == nil {
		t.Error("a second server on the same address must fail at once")
	}
}
