// Package logship is the scorer's side of the prediction log: it samples
// answered rows (Record), records outcomes that arrive through feedback
// against the same request id (the hook a feedback join calls), keeps both in
// a buffer bounded in bytes, and ships them in batches to the control plane
// (POST /api/v1/logs), retrying with backoff while it is away. Nothing in it
// blocks scoring: Record takes one short lock only for a sampled row, and a
// full buffer drops its oldest records, counted.
//
// Whether a row is sampled is a hash of (model, request id, row), compared
// with the model's rate: the scorer needs no memory of what it logged to ship
// an outcome that arrives hours later, long after its feedback join forgot
// the request. The hash decides again, and ships the outcome only for rows it
// logged; the control plane joins them by request id at export.
package logship

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelops/modelops/internal/predlog"
)

// Shipper sends a batch to the control plane (client.Client.ShipLog). An
// error means the batch may be sent again; a repeat is stored once.
type Shipper interface {
	ShipLog(ctx context.Context, b *predlog.Batch) (*predlog.Stored, error)
}

// Config configures a Log. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Node names the scorer in batches (the name its token is bound to).
	Node string
	// Rate is the share of answered rows logged, 0 to 1, for every model
	// Rates does not name.
	Rate float64
	// Rates overrides Rate per model.
	Rates map[string]float64
	// BatchRows bounds the rows and outcomes of one shipment; a full batch
	// ships at once, a partial one every Interval.
	BatchRows int
	Interval  time.Duration
	// MaxBytes bounds what the buffer holds while the control plane is away
	// (an estimate of each record's memory); beyond it, the oldest go.
	MaxBytes int64
	// MaxBackoff bounds the wait between failed shipments.
	MaxBackoff time.Duration
}

// DefaultConfig returns the defaults of `scorer`.
func DefaultConfig() Config {
	return Config{Rate: 0.01, BatchRows: 500, Interval: time.Second, MaxBytes: 16 << 20, MaxBackoff: 30 * time.Second}
}

// Validate names the setting out of range by its flag.
func (c Config) Validate() error {
	if !(c.Rate >= 0 && c.Rate <= 1) {
		return fmt.Errorf("--log-sample %v: want 0 (off) to 1", c.Rate)
	}
	for m, r := range c.Rates {
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("--log-sample-model %s=%v: want 0 (off) to 1", m, r)
		}
	}
	switch {
	case c.BatchRows < 1 || c.BatchRows > predlog.MaxBatchRows:
		return fmt.Errorf("--log-batch %d: want 1 to %d", c.BatchRows, predlog.MaxBatchRows)
	case c.Interval <= 0 || c.Interval > time.Minute:
		return fmt.Errorf("--log-interval %s: want more than 0, at most 1m", c.Interval)
	case c.MaxBytes < 1<<20:
		return fmt.Errorf("--log-buffer %d: want at least 1 MiB (%d bytes)", c.MaxBytes, 1<<20)
	}
	return nil
}

// Sampling reports whether any model is logged.
func (c Config) Sampling() bool {
	if c.Rate > 0 {
		return true
	}
	for _, r := range c.Rates {
		if r > 0 {
			return true
		}
	}
	return false
}

// Answer is what Record reads of one answered request; Record keeps nothing
// that points into it.
type Answer struct {
	Model     string
	Version   int
	Arm       string
	Source    string
	Key       string
	RequestID string
	// Flat holds Rows rows of features; Scores one answer per row.
	Flat   []float32
	Rows   int
	Scores []float32
}

// Log samples, buffers and ships a scorer's prediction log.
type Log struct {
	Config Config
	Ship   Shipper
	// Permanent says a shipment failed for good (the control plane refused
	// the batch); it is dropped, counted, instead of retried.
	Permanent func(error) bool
	Logger    *slog.Logger

	models  atomic.Pointer[map[string]*modelLog]
	modelMu sync.Mutex

	mu      sync.Mutex
	queue   []record // queue[head:] waits, oldest first
	head    int
	bytes   int64
	retry   int   // size of the batch that last failed, shipped again whole
	removed int64 // records ever removed from the front
	kick    chan struct{}
	holders map[string]func(id string) bool

	sampled, outcomes            *prometheus.CounterVec
	shipped, dropped             *prometheus.CounterVec
	failures                     prometheus.Counter
	bufferedRecords, bufferBytes prometheus.Gauge
}

// modelLog is one model's rate and counters, resolved once.
type modelLog struct {
	name              string
	rate              float64
	sampled, outcomes prometheus.Counter
}

// record is a row or an outcome waiting to ship.
type record struct {
	row     *predlog.Row
	outcome *predlog.Outcome
	size    int64
}

// New returns a log shipping with ship (cfg's zero fields take defaults).
func New(cfg Config, ship Shipper, log *slog.Logger) *Log {
	d := DefaultConfig()
	if cfg.BatchRows == 0 {
		cfg.BatchRows = d.BatchRows
	}
	if cfg.Interval == 0 {
		cfg.Interval = d.Interval
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = d.MaxBytes
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = d.MaxBackoff
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Log{Config: cfg, Ship: ship, Logger: log, kick: make(chan struct{}, 1)}
	empty := map[string]*modelLog{}
	l.models.Store(&empty)
	l.sampled = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelops_predlog_rows_sampled_total",
		Help: "Answered rows sampled into the prediction log, by model."}, []string{"model"})
	l.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelops_predlog_outcomes_total",
		Help: "Outcomes (feedback) recorded for logged rows, by model."}, []string{"model"})
	l.shipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelops_predlog_shipped_total",
		Help: "Records the control plane acknowledged, by kind (row, outcome)."}, []string{"kind"})
	l.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "modelops_predlog_dropped_total",
		Help: "Records lost: overflow (the buffer was full, the oldest went) or rejected (the control plane refused the batch)."}, []string{"reason"})
	l.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelops_predlog_ship_failures_total",
		Help: "Shipments that failed (retried with backoff)."})
	l.bufferedRecords = prometheus.NewGauge(prometheus.GaugeOpts{Name: "modelops_predlog_buffered_records",
		Help: "Rows and outcomes waiting to ship."})
	l.bufferBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "modelops_predlog_buffered_bytes",
		Help: "Estimated memory of the records waiting to ship (bounded by --log-buffer)."})
	for _, r := range []string{"overflow", "rejected"} {
		l.dropped.WithLabelValues(r)
	}
	for _, k := range []string{"row", "outcome"} {
		l.shipped.WithLabelValues(k)
	}
	return l
}

// Collectors are the log's Prometheus series, for the scorer's /metrics.
func (l *Log) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.sampled, l.outcomes, l.shipped, l.dropped, l.failures, l.bufferedRecords, l.bufferBytes}
}

// Rate is the share of model's rows logged.
func (l *Log) Rate(model string) float64 { return l.model(model).rate }

func (l *Log) model(name string) *modelLog {
	if m, ok := (*l.models.Load())[name]; ok {
		return m
	}
	l.modelMu.Lock()
	defer l.modelMu.Unlock()
	cur := *l.models.Load()
	if m, ok := cur[name]; ok {
		return m
	}
	rate, ok := l.Config.Rates[name]
	if !ok {
		rate = l.Config.Rate
	}
	m := &modelLog{name: name, rate: rate, sampled: l.sampled.WithLabelValues(name), outcomes: l.outcomes.WithLabelValues(name)}
	next := make(map[string]*modelLog, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[name] = m
	l.models.Store(&next)
	return m
}

// Record samples a's rows at its model's rate. It never blocks on shipping:
// a sampled row costs a copy of its features and a short lock.
func (l *Log) Record(a *Answer) {
	m := l.model(a.Model)
	if m.rate <= 0 || a.Rows < 1 || len(a.Scores) != a.Rows || len(a.Flat)%a.Rows != 0 {
		return
	}
	var h uint64
	id := a.RequestID
	if id != "" {
		h = idHash(a.Model, id)
	}
	width := len(a.Flat) / a.Rows
	var now time.Time
	for i := 0; i < a.Rows; i++ {
		var f float64
		if id != "" && h != 0 {
			f = rowFraction(h, i)
		} else {
			f = rand.Float64()
		}
		if f >= m.rate {
			continue
		}
		if now.IsZero() {
			now = time.Now().UTC()
			if id == "" {
				id = newID() // a log-only id: no feedback can name this answer
			}
		}
		r := &predlog.Row{Model: a.Model, Version: a.Version, Arm: a.Arm, Source: a.Source, RoutingKey: a.Key,
			RequestID: RowID(id, i, a.Rows), Time: now, Features: append([]float32(nil), a.Flat[i*width:(i+1)*width]...),
			Answer: float64(a.Scores[i])}
		l.push(record{row: r, size: rowSize(r)})
		m.sampled.Inc()
	}
}

// RowID names row i of an answer of n rows in the log: the request id for a
// one-row answer, "ID:i" for each row of many.
func RowID(id string, i, n int) string {
	if n == 1 {
		return id
	}
	return id + ":" + strconv.Itoa(i)
}

// Sampled reports whether row i of the answer named id was logged for model
// (at the rate the log has now).
func (l *Log) Sampled(model, id string, i int) bool {
	m := l.model(model)
	return m.rate > 0 && rowFraction(idHash(model, id), i) < m.rate
}

// Outcomes is the hook of model's feedback join (monitor.Join.Outcomes): it
// records outcomes of the rows it logged; for an id the join no longer
// holds, it takes the outcomes if any model logged a row of it and no other
// join holds it, and says so.
func (l *Log) Outcomes(model string) func(id string, outcomes []float64, held bool) bool {
	l.model(model) // known from the start: an outcome may come before any request
	return func(id string, outcomes []float64, held bool) bool {
		if held {
			l.recordOutcomes(model, id, outcomes)
			return true
		}
		if !issued(id) {
			return false
		}
		l.mu.Lock()
		holders := make([]func(string) bool, 0, len(l.holders))
		for _, h := range l.holders {
			holders = append(holders, h)
		}
		l.mu.Unlock()
		for _, holds := range holders {
			if holds(id) {
				return false // that join records it
			}
		}
		took := false
		for name := range *l.models.Load() {
			if l.recordOutcomes(name, id, outcomes) > 0 {
				took = true
			}
		}
		return took
	}
}

// SetHolder tells the log of model's feedback join (monitor.Join.Holds; nil
// once the model is gone), so that feedback one join does not hold goes to
// the join that does.
func (l *Log) SetHolder(model string, holds func(id string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holders == nil {
		l.holders = map[string]func(string) bool{}
	}
	if holds == nil {
		delete(l.holders, model)
		return
	}
	l.holders[model] = holds
}

func (l *Log) recordOutcomes(model, id string, outcomes []float64) int {
	m := l.model(model)
	if m.rate <= 0 || id == "" || len(id) > predlog.MaxIDLength-12 {
		return 0
	}
	h := idHash(model, id)
	now := time.Now().UTC()
	n := 0
	for i, v := range outcomes {
		if rowFraction(h, i) >= m.rate {
			continue
		}
		o := &predlog.Outcome{Model: model, RequestID: RowID(id, i, len(outcomes)), Time: now, Outcome: v}
		l.push(record{outcome: o, size: 160 + int64(len(o.RequestID))})
		m.outcomes.Inc()
		n++
	}
	return n
}

// issued reports whether id has the shape of the ids a join issues (16 hex
// digits), so that no other string is logged as an outcome.
func issued(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := strconv.ParseUint(id, 16, 64)
	return err == nil
}

// push appends r, dropping the oldest records beyond the bound.
func (l *Log) push(r record) {
	l.mu.Lock()
	l.queue = append(l.queue, r)
	l.bytes += r.size
	dropped := 0
	for l.bytes > l.Config.MaxBytes && l.head < len(l.queue) {
		l.bytes -= l.queue[l.head].size
		l.queue[l.head] = record{}
		l.head++
		l.removed++
		dropped++
	}
	if l.head > 1024 && l.head > len(l.queue)/2 {
		n := copy(l.queue, l.queue[l.head:])
		clear(l.queue[n:])
		l.queue, l.head = l.queue[:n], 0
	}
	waiting := len(l.queue) - l.head
	l.mu.Unlock()
	if dropped > 0 {
		l.dropped.WithLabelValues("overflow").Add(float64(dropped))
	}
	if waiting >= l.Config.BatchRows {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Buffered is how many records wait to ship, and their estimated bytes.
func (l *Log) Buffered() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue) - l.head, l.bytes
}

// take copies the next batch from the front of the queue; it stays there,
// counted in the bound, until it is acknowledged (done).
func (l *Log) take() (recs []record, from int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(len(l.queue)-l.head, l.Config.BatchRows)
	if l.retry > 0 {
		n = min(n, l.retry) // the same batch again, so a repeat is stored once
	}
	// Keep a batch's JSON well within what the control plane takes.
	var size int64
	k := 0
	for k < n {
		size += jsonSize(l.queue[l.head+k])
		if k > 0 && size > predlog.MaxBatchBytes/2 {
			break
		}
		k++
	}
	return append([]record(nil), l.queue[l.head:l.head+k]...), l.removed
}

// done removes a shipped batch of n records taken when l.removed was from
// (those the bound dropped since are gone already).
func (l *Log) done(from int64, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retry = 0
	for k := from + int64(n) - l.removed; k > 0 && l.head < len(l.queue); k-- {
		l.bytes -= l.queue[l.head].size
		l.queue[l.head] = record{}
		l.head++
		l.removed++
	}
}

// Run ships until ctx is done: a batch as soon as one is full, what there is
// every Interval, and after a failure again after a backoff (doubling to
// MaxBackoff).
func (l *Log) Run(ctx context.Context) {
	failures := 0
	wait := l.Config.Interval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-l.kick:
			if failures > 0 {
				<-t.C // the control plane is away: keep to the backoff
			}
			t.Stop()
		}
		if err := l.Flush(ctx); err != nil {
			failures++
			wait = backoff(failures, l.Config.Interval, l.Config.MaxBackoff)
			if failures == 1 || failures%10 == 0 {
				n, _ := l.Buffered()
				l.Logger.Warn("cannot ship the prediction log; buffering", "err", err, "buffered", n, "retry_in", wait)
			}
			continue
		}
		if failures > 0 {
			l.Logger.Info("prediction log shipping again", "after_failures", failures)
		}
		failures, wait = 0, l.Config.Interval
	}
}

// backoff is the wait after n failures: base doubling to max, with jitter.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// Flush ships every record buffered, batch by batch, and stops at the first
// failure (the batch stays at the front of the buffer). With Run at once, a
// batch may ship twice.
func (l *Log) Flush(ctx context.Context) error {
	for {
		recs, from := l.take()
		if len(recs) == 0 {
			l.gauges()
			return nil
		}
		b := &predlog.Batch{Node: l.Config.Node}
		for _, r := range recs {
			if r.row != nil {
				b.Rows = append(b.Rows, *r.row)
			} else {
				b.Outcomes = append(b.Outcomes, *r.outcome)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := l.Ship.ShipLog(sctx, b)
		cancel()
		switch {
		case err == nil:
			l.shipped.WithLabelValues("row").Add(float64(len(b.Rows)))
			l.shipped.WithLabelValues("outcome").Add(float64(len(b.Outcomes)))
			l.done(from, len(recs))
		case l.Permanent != nil && l.Permanent(err):
			l.dropped.WithLabelValues("rejected").Add(float64(len(recs)))
			l.done(from, len(recs))
			l.Logger.Warn("the control plane refused a prediction log batch; dropped", "rows", len(b.Rows), "outcomes", len(b.Outcomes), "err", err)
		default:
			l.failures.Inc()
			l.mu.Lock()
			l.retry = len(recs)
			l.mu.Unlock()
			l.gauges()
			return err
		}
	}
}

func (l *Log) gauges() {
	n, b := l.Buffered()
	l.bufferedRecords.Set(float64(n))
	l.bufferBytes.Set(float64(b))
}

// idHash hashes a model and request id: FNV-1a over both, a zero byte
// between (written out: hash/fnv's interface costs allocations per call).
func idHash(model, id string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(model); i++ {
		h = (h ^ uint64(model[i])) * prime
	}
	h *= prime // the zero byte
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * prime
	}
	return h | 1
}

// rowFraction maps row i of an answer to [0,1) uniformly: a splitmix64
// finaliser over the id's hash and the row.
func rowFraction(h uint64, i int) float64 {
	x := h ^ (uint64(i)+1)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func newID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// rowSize estimates a row's memory in the buffer.
func rowSize(r *predlog.Row) int64 {
	return 200 + 4*int64(len(r.Features)) + int64(len(r.Model)+len(r.Arm)+len(r.Source)+len(r.RoutingKey)+len(r.RequestID))
}

// jsonSize bounds a record's size in a batch's JSON.
func jsonSize(r record) int64 {
	if r.row != nil {
		return 300 + 16*int64(len(r.row.Features)) + int64(len(r.row.RoutingKey)+len(r.row.RequestID)+len(r.row.Model))
	}
	return 200 + int64(len(r.outcome.RequestID)+len(r.outcome.Model))
}
