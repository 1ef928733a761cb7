package monitor

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the monitor on the control plane's /metrics, named as
// Prometheus names things (base units, _total, _ratio): per model, version and
// arm over the window, the request rate, error and fallback ratios, p99, the
// rows counted for drift, each feature's PSI (the first MaxFeatureMetrics of the
// card's features), the largest and the prediction PSI; the automatic
// decisions taken by model and kind; the nodes reporting, and those that cannot
// load a model's deployment. A PSI is exported only once its histogram holds
// enough rows to grade it, so an alert on it does not fire on the noise of a
// dozen rows.
type Collector struct {
	M *Monitor
}

var (
	descRate      = prometheus.NewDesc("modelops_monitor_requests_per_second", "Requests per second over the monitor window.", []string{"model", "version", "arm"}, nil)
	descErrors    = prometheus.NewDesc("modelops_monitor_error_ratio", "Share of requests whose model failed, over the window (0–1).", []string{"model", "version", "arm"}, nil)
	descFallbacks = prometheus.NewDesc("modelops_monitor_fallback_ratio", "Share of requests answered by the rules, over the window (0–1).", []string{"model", "version", "arm"}, nil)
	descP99       = prometheus.NewDesc("modelops_monitor_p99_seconds", "p99 latency over the window (histogram upper edge).", []string{"model", "version", "arm"}, nil)
	descPSI       = prometheus.NewDesc("modelops_monitor_feature_psi_max", "Largest feature PSI against the card's reference.", []string{"model", "version", "arm"}, nil)
	descFeatPSI   = prometheus.NewDesc("modelops_monitor_feature_psi", "PSI of one input feature against the card's reference.", []string{"model", "version", "arm", "feature"}, nil)
	descPredPSI   = prometheus.NewDesc("modelops_monitor_prediction_psi", "Prediction PSI against the card's reference.", []string{"model", "version", "arm"}, nil)
	descDriftRows = prometheus.NewDesc("modelops_monitor_drift_rows", "Rows whose features were counted for drift over the window; the PSIs appear once there are enough.", []string{"model", "version", "arm"}, nil)
	descDecisions = prometheus.NewDesc("modelops_monitor_decisions_total", "Automatic decisions taken, by model and the kind of event each made (auto_rollback, canary_cleared, drift_alert).", []string{"model", "kind"}, nil)
	descNodes     = prometheus.NewDesc("modelops_monitor_nodes", "Scorer nodes that reported in the last minute.", nil, nil)
	descRetained  = prometheus.NewDesc("modelops_monitor_retained_bytes", "Bytes of counts the monitor keeps (its budget is DefaultMaxBytes).", nil, nil)
	descSeries    = prometheus.NewDesc("modelops_monitor_series", "Series (model, version, arm) the monitor keeps.", nil, nil)
	descUnserved  = prometheus.NewDesc("modelops_monitor_nodes_not_serving_deployment", "Scorer nodes, of those that reported in the last minute, that cannot load the model's deployment (the fleet API says why).", []string{"model"}, nil)
)

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRate, descErrors, descFallbacks, descP99, descPSI, descFeatPSI, descPredPSI, descDriftRows, descDecisions, descNodes, descUnserved, descRetained, descSeries} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	models, _ := c.M.Registry.Models(ctx)
	for _, md := range models {
		h, err := c.M.Health(ctx, md.Name)
		if err != nil {
			continue
		}
		for _, a := range h.Arms {
			l := []string{md.Name, strconv.Itoa(a.Version), a.Arm}
			ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, a.RequestRate, l...)
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.GaugeValue, a.ErrorRate, l...)
			ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.GaugeValue, a.FallbackRate, l...)
			ch <- prometheus.MustNewConstMetric(descP99, prometheus.GaugeValue, a.P99Ms/1000, l...)
			if a.DriftMinRows > 0 {
				ch <- prometheus.MustNewConstMetric(descDriftRows, prometheus.GaugeValue, float64(a.DriftRows), l...)
			}
			if a.featureGraded {
				ch <- prometheus.MustNewConstMetric(descPSI, prometheus.GaugeValue, a.MaxPSI, l...)
				c.featurePSI(ch, a, l)
			}
			if a.predGraded {
				ch <- prometheus.MustNewConstMetric(descPredPSI, prometheus.GaugeValue, a.PredPSI, l...)
			}
		}
	}
	for k, n := range c.M.decisionCounts() {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), k.model, k.kind)
	}
	u := c.M.Usage()
	ch <- prometheus.MustNewConstMetric(descRetained, prometheus.GaugeValue, float64(u.Bytes))
	ch <- prometheus.MustNewConstMetric(descSeries, prometheus.GaugeValue, float64(u.Series))
	recent := 0
	unserved := map[string]int{}
	for _, n := range c.M.Fleet() {
		if c.M.Now().Sub(n.LastReport) < time.Minute {
			recent++
			for model := range n.LoadErrors {
				unserved[model]++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(recent))
	// Every model gets a series, 0 while all is well, so that an alert has one to watch.
	for _, md := range models {
		ch <- prometheus.MustNewConstMetric(descUnserved, prometheus.GaugeValue, float64(unserved[md.Name]), md.Name)
	}
}

// MaxFeatureMetrics bounds the per-feature PSI gauges of one series: a card
// may name up to 1,024 features, and a scrape should stay small.
const MaxFeatureMetrics = 128

// featurePSI exports the PSI of each feature of one arm, by name.
func (c Collector) featurePSI(ch chan<- prometheus.Metric, a ArmHealth, l []string) {
	names := make([]string, 0, len(a.FeaturePSI))
	for name := range a.FeaturePSI {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) > MaxFeatureMetrics {
		names = names[:MaxFeatureMetrics]
	}
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(descFeatPSI, prometheus.GaugeValue, a.FeaturePSI[name], l[0], l[1], l[2], name)
	}
}
