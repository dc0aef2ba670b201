// Package metrics is berthd's Prometheus instrumentation: one Metrics, built
// once by cmd/berthd and handed to the parts that record, on its own
// registry (nothing is registered globally, so tests and several daemons in
// one process never collide). Every method is safe on a nil *Metrics, which
// records nothing: parts and tests that do not care pass nil.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Pull results, the result label of berth_image_pull_duration_seconds.
const (
	PullSuccess = "success"
	PullFailure = "failure"
)

// Image verification results, the result label of
// berth_image_verifications_total and its duration.
const (
	VerifyAccepted = "accepted"
	VerifyRejected = "rejected"
	VerifyError    = "error"
)

// criBuckets span a Version answered from memory (well under a
// millisecond) to a PullImage of a large image (minutes).
var criBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// pullBuckets span a re-pull that moves no layer to a multi-GB image.
var pullBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// Metrics holds berthd's collectors. It is safe for concurrent use.
type Metrics struct {
	reg                *prometheus.Registry
	criRequests        *prometheus.CounterVec
	criDuration        *prometheus.HistogramVec
	pullBytes          prometheus.Counter
	pullDuration       *prometheus.HistogramVec
	containerStarts    prometheus.Counter
	supervisorRestarts prometheus.Counter
	verifications      *prometheus.CounterVec
	verifyDuration     *prometheus.HistogramVec
}

// New builds the collectors, the Go runtime and process collectors
// included, on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		criRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_requests_total",
			Help: "CRI calls answered, by full gRPC method and gRPC status code.",
		}, []string{"method", "code"}),
		criDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cri_request_duration_seconds",
			Help:    "Time to answer a CRI call (a stream: its whole life), by full gRPC method.",
			Buckets: criBuckets,
		}, []string{"method"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_image_pull_bytes_total",
			Help: "Compressed layer bytes received from registries.",
		}),
		pullDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_image_pull_duration_seconds",
			Help:    "Time to pull an image (once per pull shared by concurrent callers), by result.",
			Buckets: pullBuckets,
		}, []string{"result"}),
		containerStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_container_starts_total",
			Help: "Containers started.",
		}),
		supervisorRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_supervisor_restarts_total",
			Help: "Times berthd started the supervisor again after it stopped answering.",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_image_verifications_total",
			Help: "Image signature checks against the image policy that read signatures (not the cached verdicts), by result: accepted, rejected, error (signatures could not be read).",
		}, []string{"result"}),
		verifyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_image_verification_duration_seconds",
			Help:    "Time to find and verify an image's signatures, by result.",
			Buckets: criBuckets,
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		m.criRequests, m.criDuration, m.pullBytes, m.pullDuration, m.containerStarts, m.supervisorRestarts,
		m.verifications, m.verifyDuration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// CRIRequest records one CRI call: method is gRPC's full method name
// ("/runtime.v1.RuntimeService/Version"), code the status code's name
// ("OK", as codes.Code.String gives it).
func (m *Metrics) CRIRequest(method, code string, took time.Duration) {
	if m == nil {
		return
	}
	m.criRequests.WithLabelValues(method, code).Inc()
	m.criDuration.WithLabelValues(method).Observe(took.Seconds())
}

// ImagePullBytes adds n bytes received from a registry for a layer.
func (m *Metrics) ImagePullBytes(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.pullBytes.Add(float64(n))
}

// ImagePulled records a finished pull and whether it failed.
func (m *Metrics) ImagePulled(took time.Duration, err error) {
	if m == nil {
		return
	}
	result := PullSuccess
	if err != nil {
		result = PullFailure
	}
	m.pullDuration.WithLabelValues(result).Observe(took.Seconds())
}

// ImageVerified records one signature check of an image (result is one of
// the Verify* constants).
func (m *Metrics) ImageVerified(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.verifications.WithLabelValues(result).Inc()
	m.verifyDuration.WithLabelValues(result).Observe(took.Seconds())
}

// ContainerStarted counts a container start.
func (m *Metrics) ContainerStarted() {
	if m == nil {
		return
	}
	m.containerStarts.Inc()
}

// SupervisorRestarted counts a restart of a supervisor that stopped
// answering.
func (m *Metrics) SupervisorRestarted() {
	if m == nil {
		return
	}
	m.supervisorRestarts.Inc()
}

// Handler serves the registry in the Prometheus exposition format (404
// for a nil Metrics).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests that read values back.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	if m == nil {
		return prometheus.Gatherers{}
	}
	return m.reg
}
