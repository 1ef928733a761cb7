package api

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// scorerMetrics are the scorer's Prometheus series, on a registry of its own.
type scorerMetrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	rows      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	fallbacks *prometheus.CounterVec
	shadow    *prometheus.HistogramVec
	rejected  *prometheus.CounterVec
	batchRows prometheus.Histogram
	// series caches answerSeries by [model, arm, source].
	series sync.Map
}

// answerSeries are the series every answer of one model, arm and source adds to,
// resolved once: looking up labels costs more than the adds themselves.
type answerSeries struct {
	requests, rows prometheus.Counter
	latency        prometheus.Observer
}

func (m *scorerMetrics) answered(model, arm, source string) *answerSeries {
	k := [3]string{model, arm, source}
	if v, ok := m.series.Load(k); ok {
		return v.(*answerSeries)
	}
	a := &answerSeries{
		requests: m.requests.WithLabelValues(model, arm, source),
		rows:     m.rows.WithLabelValues(model, arm, source),
		latency:  m.latency.WithLabelValues(model, arm),
	}
	v, _ := m.series.LoadOrStore(k, a)
	return v.(*answerSeries)
}

func newScorerMetrics(s *Scorer) *scorerMetrics {
	m := &scorerMetrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_requests_total", Help: "Score requests answered, by model, arm and source.",
	}, []string{"model", "arm", "source"})
	m.rows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_rows_total", Help: "Rows scored, by model, arm and source.",
	}, []string{"model", "arm", "source"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelops_scorer_request_duration_seconds", Help: "Time to score a request, by model and arm.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"model", "arm"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_fallbacks_total", Help: "Requests answered by the fallback rules, by reason.",
	}, []string{"model", "arm", "reason"})
	m.shadow = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelops_scorer_shadow_abs_diff", Help: "|challenger − champion| per row scored in shadow mode.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .2, .5, 1},
	}, []string{"model"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_scorer_rejected_total", Help: "Requests refused: bad input (400/404/413) or over capacity (429/503).",
	}, []string{"code"})
	m.batchRows = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "modelops_scorer_batch_rows", Help: "Rows in the session run that answered a micro-batched request.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	m.reg.MustRegister(m.requests, m.rows, m.latency, m.fallbacks, m.shadow, m.rejected, m.batchRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, sv := range s.Models {
		sv := sv
		labels := prometheus.Labels{"model": sv.Name}
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "modelops_scorer_swaps_total", Help: "Sessions replaced by a newer one.", ConstLabels: labels},
				func() float64 { return float64(sv.Slot.Swaps() + sv.Candidate.Swaps()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "modelops_scorer_failed_loads_total", Help: "Versions that failed to load (the old one kept serving).", ConstLabels: labels},
				func() float64 { return float64(sv.failedLoads()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelops_scorer_loaded_version", Help: "Version each arm serves (0: none).", ConstLabels: prometheus.Labels{"model": sv.Name, "arm": ArmChampion}},
				func() float64 { v, _, _ := sv.Slot.Current(); return float64(v) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelops_scorer_loaded_version", Help: "Version each arm serves (0: none).", ConstLabels: prometheus.Labels{"model": sv.Name, "arm": ArmChallenger}},
				func() float64 { v, _, _ := sv.Candidate.Current(); return float64(v) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelops_scorer_breaker_open", Help: "1 while the circuit breaker sends traffic to the rules.", ConstLabels: labels},
				func() float64 {
					if sv.Breaker.State() == "open" {
						return 1
					}
					return 0
				}),
		)
	}
	return m
}
