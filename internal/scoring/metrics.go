package scoring

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/modelops/modelops/internal/buildinfo"
	"github.com/modelops/modelops/internal/loader"
)

// Metrics are a service's Prometheus series, on a registry of its own: every
// answer and every refusal, per model, version and arm.
type Metrics struct {
	Registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	rows      *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	fallbacks *prometheus.CounterVec
	shadow    *prometheus.HistogramVec
	refusals  *prometheus.CounterVec
	batchRows prometheus.Histogram
	// series caches answerSeries by [model, version, arm, source].
	series sync.Map
}

// answerSeries are the series every answer of one model, version, arm and
// source adds to, resolved once: looking up labels costs more than the adds.
type answerSeries struct {
	requests, rows, errors prometheus.Counter
	latency                prometheus.Observer
}

func versionLabel(v int) string {
	if v == 0 {
		return ""
	}
	return strconv.Itoa(v)
}

func (m *Metrics) answered(model, version, arm, source string) *answerSeries {
	k := [4]string{model, version, arm, source}
	if v, ok := m.series.Load(k); ok {
		return v.(*answerSeries)
	}
	a := &answerSeries{
		requests: m.requests.WithLabelValues(model, version, arm, source),
		rows:     m.rows.WithLabelValues(model, version, arm, source),
		errors:   m.errors.WithLabelValues(model, version, arm),
		latency:  m.latency.WithLabelValues(model, version, arm),
	}
	v, _ := m.series.LoadOrStore(k, a)
	return v.(*answerSeries)
}

func (m *Metrics) refused(model, version, arm string, status int, reason string) {
	m.refusals.WithLabelValues(model, version, arm, strconv.Itoa(status), reason).Inc()
}

// Refused counts a refusal made where no model is known (an API key missing,
// a body too large to read).
func (m *Metrics) Refused(status int, reason string) { m.refused("", "", "", status, reason) }

func newMetrics(s *Service) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_requests_total", Help: "Score requests that reached a model, by model, version asked, arm and source (model, fallback, or none when nothing could answer).",
	}, []string{"model", "version", "arm", "source"})
	m.rows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_rows_total", Help: "Rows scored, by model, version asked, arm and source.",
	}, []string{"model", "version", "arm", "source"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_model_errors_total", Help: "Requests whose model failed (a session error, or any failure of a model without rules), by model, version and arm.",
	}, []string{"model", "version", "arm"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelops_scorer_request_duration_seconds", Help: "Time to score a request, by model, version asked and arm.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"model", "version", "arm"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_fallbacks_total", Help: "Requests answered by the fallback rules, by model, the version that caused it, arm and reason.",
	}, []string{"model", "version", "arm", "reason"})
	m.shadow = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelops_scorer_shadow_abs_diff", Help: "|canary − production| per row scored in shadow mode.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .2, .5, 1},
	}, []string{"model"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_refused_total", Help: "Requests answered with an error status, by model (\"\" when unknown), version, arm, code and reason.",
	}, []string{"model", "version", "arm", "code", "reason"})
	m.batchRows = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "modelops_scorer_batch_rows", Help: "Rows in the session run that answered a micro-batched request.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	m.Registry.MustRegister(m.requests, m.rows, m.errors, m.latency, m.fallbacks, m.shadow, m.refusals, m.batchRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector("scorer"),
		modelCollector{s})
	return m
}

// modelCollector reports the state of every model served at scrape time, so
// models added and removed later are covered.
type modelCollector struct{ s *Service }

var (
	descSwaps       = prometheus.NewDesc("modelops_scorer_swaps_total", "Sessions replaced by a newer one.", []string{"model"}, nil)
	descFailedLoads = prometheus.NewDesc("modelops_scorer_failed_loads_total", "Versions that failed to load (the old one kept serving).", []string{"model"}, nil)
	descLoaded      = prometheus.NewDesc("modelops_scorer_loaded_version", "Version each arm serves (0: none).", []string{"model", "arm"}, nil)
	descBreaker     = prometheus.NewDesc("modelops_scorer_breaker_open", "1 while the circuit breaker of the version an arm serves sends its traffic to the rules.", []string{"model", "arm"}, nil)
	descReady       = prometheus.NewDesc("modelops_scorer_model_ready", "1 while a model can answer, from a verified version or its rules.", []string{"model"}, nil)
)

func (c modelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSwaps, descFailedLoads, descLoaded, descBreaker, descReady} {
		ch <- d
	}
}

func (c modelCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.Models() {
		ch <- prometheus.MustNewConstMetric(descSwaps, prometheus.CounterValue, float64(m.Production.Swaps()+m.Canary.Swaps()), m.Name)
		ch <- prometheus.MustNewConstMetric(descFailedLoads, prometheus.CounterValue, float64(m.failedLoads()), m.Name)
		ready := 0.0
		if m.Ready() {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, m.Name)
		for arm, slot := range map[string]*loader.Slot{ArmProduction: m.Production, ArmCanary: m.Canary} {
			v, _, _ := slot.Current()
			ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, float64(v), m.Name, arm)
			open := 0.0
			if m.BreakerState(slot) == "open" {
				open = 1
			}
			ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, open, m.Name, arm)
		}
	}
}
