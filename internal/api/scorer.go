package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor"
)

// Arms of a model with a canary.
const (
	ArmChampion   = "champion"
	ArmChallenger = "challenger"
)

// Routing is how a model's traffic is split and blended right now.
type Routing struct {
	// Traffic is the challenger's percentage (0–100).
	Traffic float64
	// Mode is "ab" or "shadow" ("" when there is no canary).
	Mode string
	// Blend is w in score = w·model + (1−w)·rules.
	Blend float64
}

// Served is one model a scorer answers for: the slots its verified sessions are
// published in (champion and challenger), its fallback rules (nil when the model
// has none), the breaker in front of the model, and the routing in force.
type Served struct {
	Name      string
	Slot      *loader.Slot
	Candidate *loader.Slot
	Rules     fallback.Rules
	Breaker   *fallback.Breaker
	// Status, when set, reports how the node keeps the slots up to date.
	Status func() any
	// FailedLoads, when set, counts versions that failed to load.
	FailedLoads func() int

	routing atomic.Pointer[Routing]
}

// NewServed returns a model with empty slots, a breaker (5 consecutive model
// errors open it for 5 s) and no canary.
func NewServed(name string, rules fallback.Rules) *Served {
	m := &Served{Name: name, Slot: &loader.Slot{}, Candidate: &loader.Slot{}, Rules: rules, Breaker: fallback.NewBreaker(5, 5*time.Second)}
	m.SetRouting(Routing{Blend: 1})
	return m
}

// SetRouting changes the traffic split and blend.
func (m *Served) SetRouting(r Routing) { m.routing.Store(&r) }

// Routing returns the traffic split and blend in force.
func (m *Served) Routing() Routing { return *m.routing.Load() }

func (m *Served) failedLoads() int {
	if m.FailedLoads == nil {
		return 0
	}
	return m.FailedLoads()
}

// width is the row width requests must carry: the rules' if the model has rules,
// else the loaded session's; 0 when neither is there.
func (m *Served) width() int {
	if m.Rules != nil {
		return m.Rules.Features()
	}
	if l := m.Slot.Acquire(); l != nil {
		defer l.Release()
		return l.Signature().Features()
	}
	return 0
}

// Scorer serves /v1/score and the Open Inference Protocol v2 for a set of models.
type Scorer struct {
	Models map[string]*Served
	// Default answers requests that name no model.
	Default string
	Logger  *slog.Logger
	// MaxBodyBytes bounds a score request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxRows bounds the rows of one request (default 4096).
	MaxRows int
	// Budget is a request's latency budget unless it names its own (default 50 ms).
	Budget time.Duration
	// MaxInFlight requests score at once; up to MaxQueue more wait for a turn, and
	// beyond that the answer is 429 with Retry-After.
	MaxInFlight, MaxQueue int

	// Recorder, when set, counts every answer for the monitor.
	Recorder *monitor.Recorder
	// Join, when set, remembers answers for POST /v1/feedback.
	Join *monitor.Join
	// APIKeys, when set, are required on scoring and feedback (Authorization:
	// Bearer KEY or X-API-Key: KEY).
	APIKeys []string
	// Batcher, when set, gathers concurrent requests of at most a quarter of its
	// MaxRows rows into shared session runs (micro-batching).
	Batcher *loader.Batcher

	metrics   *scorerMetrics
	sem       chan struct{}
	waiting   atomic.Int64
	shadowSem chan struct{}
	once      sync.Once
}

// NewScorer returns a scorer API for the given models; the first is the default.
func NewScorer(log *slog.Logger, models ...*Served) *Scorer {
	s := &Scorer{Models: map[string]*Served{}, Logger: log, MaxBodyBytes: 1 << 20, MaxRows: 4096,
		Budget: 50 * time.Millisecond, MaxInFlight: 256, MaxQueue: 4096}
	for i, m := range models {
		s.Models[m.Name] = m
		if i == 0 {
			s.Default = m.Name
		}
	}
	return s
}

func (s *Scorer) init() {
	s.once.Do(func() {
		s.metrics = newScorerMetrics(s)
		s.sem = make(chan struct{}, max(1, s.MaxInFlight))
		s.shadowSem = make(chan struct{}, 4)
	})
}

// Handler returns the scorer's routes.
func (s *Scorer) Handler() http.Handler {
	s.init()
	e := newEcho(s.Logger)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.POST("/v1/score", viaEcho(s.scoreKeyed))
	e.POST("/v1/feedback", s.feedback, s.requireKey)
	e.GET("/v1/status", s.status)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	s.oipRoutes(e)
	return headAsGet(e)
}

// requireKey checks the API key when the scorer has any, comparing in constant time.
func (s *Scorer) requireKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.keyOK(&echoExchange{c: c}) {
			return s.reject(&requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: missingKey})
		}
		return next(c)
	}
}

const missingKey = "this scorer needs an API key: Authorization: Bearer KEY or X-API-Key: KEY"

// keyOK reports whether the request carries one of the scorer's API keys (or the
// scorer has none).
func (s *Scorer) keyOK(x exchange) bool {
	if len(s.APIKeys) == 0 {
		return true
	}
	key := x.header("X-API-Key")
	if key == "" {
		key = bearerOf(x.header("Authorization"))
	}
	ok := 0
	for _, k := range s.APIKeys {
		ok |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return key != "" && ok == 1
}

// Ready reports whether every model can answer (see /readyz), and if not, which.
func (s *Scorer) Ready() (bool, string) { return s.isReady() }

// isReady is true once every model can answer, from a session or from its rules.
// A swap never makes it false: the old session serves until the new one is in.
func (s *Scorer) isReady() (bool, string) {
	for _, m := range s.Models {
		if _, _, ok := m.Slot.Current(); !ok && m.Rules == nil {
			return false, m.Name
		}
	}
	return true, ""
}

func (s *Scorer) ready(c echo.Context) error {
	if ok, name := s.isReady(); !ok {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "model": name})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// ModelStatus is what a scorer says of one model it serves.
type ModelStatus struct {
	Model            string  `json:"model"`
	Version          int     `json:"version,omitempty"`
	Digest           string  `json:"digest,omitempty"`
	CandidateVersion int     `json:"candidate_version,omitempty"`
	Traffic          float64 `json:"traffic,omitempty"`
	Mode             string  `json:"mode,omitempty"`
	Blend            float64 `json:"blend"`
	Swaps            int64   `json:"swaps"`
	Destroyed        int64   `json:"sessions_destroyed"`
	Breaker          string  `json:"breaker"`
	Fallback         bool    `json:"has_fallback"`
	Sync             any     `json:"sync,omitempty"`
}

func (s *Scorer) status(c echo.Context) error {
	var out []ModelStatus
	for _, m := range s.Models {
		v, d, _ := m.Slot.Current()
		cv, _, _ := m.Candidate.Current()
		r := m.Routing()
		st := ModelStatus{Model: m.Name, Version: v, Digest: d, CandidateVersion: cv, Traffic: r.Traffic, Mode: r.Mode, Blend: r.Blend,
			Swaps: m.Slot.Swaps() + m.Candidate.Swaps(), Destroyed: m.Slot.Destroyed() + m.Candidate.Destroyed(),
			Breaker: m.Breaker.State(), Fallback: m.Rules != nil}
		if m.Status != nil {
			st.Sync = m.Status()
		}
		out = append(out, st)
	}
	return c.JSON(http.StatusOK, map[string]any{"models": out})
}

// maxBudget bounds the latency budget a request may ask for.
const maxBudget = time.Minute

// ScoreRequest is one row in "features" or many in "rows". Key routes sticky A/B
// traffic; BudgetMS overrides the scorer's latency budget.
type ScoreRequest struct {
	Model    string      `json:"model,omitempty"`
	Features []float64   `json:"features,omitempty"`
	Rows     [][]float64 `json:"rows,omitempty"`
	Key      string      `json:"key,omitempty"`
	BudgetMS *float64    `json:"budget_ms,omitempty"`
}

// ScoreResponse answers a score request; Score for one row, Scores for many.
type ScoreResponse struct {
	Model   string    `json:"model"`
	Score   *float32  `json:"score,omitempty"`
	Scores  []float32 `json:"scores,omitempty"`
	Source  string    `json:"source"`
	Version int       `json:"version,omitempty"`
	Arm     string    `json:"arm"`
	Reason  string    `json:"reason,omitempty"`
	// RequestID names the answer for POST /v1/feedback (model answers only).
	RequestID string `json:"request_id,omitempty"`
}

// Sources.
const (
	SourceModel    = "model"
	SourceFallback = "fallback"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// admit takes a turn to score, which the caller gives back with leave: at once
// if one is free, else after waiting in a bounded queue. A full queue answers
// 429, a wait longer than the budget 503. A request that has to wait withdraws
// its announcement to the batcher first, so no batch waits for it.
func (s *Scorer) admit(ctx context.Context, wait time.Duration, arrival *loader.Arrival) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	arrival.Abandon()
	if s.waiting.Add(1) > int64(s.MaxQueue) {
		s.waiting.Add(-1)
		s.metrics.rejected.WithLabelValues("429").Inc()
		return &requestError{status: http.StatusTooManyRequests, code: "over_capacity", msg: "too many requests waiting; retry shortly", retryAfter: 1}
	}
	defer s.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-t.C:
		s.metrics.rejected.WithLabelValues("503").Inc()
		return &requestError{status: http.StatusServiceUnavailable, code: "over_capacity", msg: "no capacity within the latency budget; retry shortly", retryAfter: 1}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave gives back a turn admit took.
func (s *Scorer) leave() { <-s.sem }

// scoreKeyed is POST /v1/score: the API key, then score.
func (s *Scorer) scoreKeyed(x exchange) error {
	if !s.keyOK(x) {
		return s.reject(&requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: missingKey})
	}
	return s.score(x)
}

func (s *Scorer) score(x exchange) error {
	body, err := requestBody(x, s.MaxBodyBytes)
	if err != nil {
		if _, ok := err.(*requestError); ok {
			return s.reject(err)
		}
		return s.reject(badRequest("reading body: " + err.Error()))
	}
	arrival := s.expect()
	defer arrival.Abandon()
	var req ScoreRequest
	if err := DecodeScoreRequest(body, &req); err != nil {
		return s.reject(badRequest(explainScoreError(body, err)))
	}
	// encoding/json reads null as 0 without complaint; a null feature is bad input.
	if bytes.Contains(body, []byte("null")) {
		if msg, bad := firstBadFeature(body); bad {
			return s.reject(badRequest(msg))
		}
	}
	name := req.Model
	if name == "" {
		name = s.Default
	}
	m, ok := s.Models[name]
	if !ok {
		return s.reject(&requestError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("unknown model %q", truncate(name, 80))})
	}
	budget := s.Budget
	if req.BudgetMS != nil {
		if !(*req.BudgetMS > 0) || *req.BudgetMS > float64(maxBudget.Milliseconds()) {
			return s.reject(badRequest(fmt.Sprintf("budget_ms must be above 0 and at most %d", maxBudget.Milliseconds())))
		}
		budget = time.Duration(*req.BudgetMS * float64(time.Millisecond))
	}
	single := req.Features != nil
	n := len(req.Rows)
	switch {
	case single && req.Rows != nil:
		return s.reject(badRequest("send \"features\" (one row) or \"rows\" (many), not both"))
	case single:
		n = 1
	case n == 0:
		return s.reject(badRequest("no input: send {\"features\":[…]} or {\"rows\":[[…],…]}"))
	case n > s.MaxRows:
		return s.reject(badRequest(fmt.Sprintf("%d rows, at most %d per request", n, s.MaxRows)))
	}
	width := m.width()
	if width == 0 {
		return &requestError{status: http.StatusServiceUnavailable, code: "unavailable", msg: fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name), retryAfter: 1}
	}
	// The rows go flat into a pooled buffer: nothing holds on to it once answer
	// has returned.
	floats := floatPool.Get().(*[]float32)
	defer floatPool.Put(floats)
	flat := slices.Grow((*floats)[:0], n*width)
	defer func() { *floats = flat[:0] }()
	for i := range n {
		r := req.Features
		if !single {
			r = req.Rows[i]
		}
		if len(r) != width {
			numbers := "numbers"
			if len(r) == 1 {
				numbers = "number"
			}
			return s.reject(badRequest(fmt.Sprintf("%s has %d %s, model %s takes %d", rowName(single, i), len(r), numbers, m.Name, width)))
		}
		for j, v := range r {
			f := float32(v)
			if math.IsInf(float64(f), 0) || math.IsNaN(v) {
				return s.reject(badRequest(fmt.Sprintf("%s position %d: %g is outside the float32 range", rowName(single, i), j, v)))
			}
			flat = append(flat, f)
		}
	}
	out, err := s.answer(x.context(), m, flat, n, req.Key, budget, arrival, nil)
	if err != nil {
		return err
	}
	resp := ScoreResponse{Model: m.Name, Source: out.source, Version: out.version, Arm: out.arm, Reason: out.reason}
	if s.Join != nil && out.source == SourceModel {
		resp.RequestID = s.Join.Remember(out.version, out.arm, out.scores)
	}
	if single {
		resp.Score = &out.scores[0]
	} else {
		resp.Scores = out.scores
	}
	return x.json(http.StatusOK, resp)
}

// FeedbackRequest joins real outcomes to an earlier answer: "outcome" for a
// one-row request, "outcomes" (one per row) for many.
type FeedbackRequest struct {
	RequestID string    `json:"request_id"`
	Outcome   *float64  `json:"outcome,omitempty"`
	Outcomes  []float64 `json:"outcomes,omitempty"`
}

func (s *Scorer) feedback(c echo.Context) error {
	if s.Join == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this scorer keeps no answers for feedback"}
	}
	body, err := readBody(c, s.MaxBodyBytes)
	if err != nil {
		return err
	}
	var req FeedbackRequest
	if err := decodeStrict(body, &req); err != nil {
		return badRequest("feedback: " + explainBody(body, err))
	}
	outcomes := req.Outcomes
	if req.Outcome != nil {
		outcomes = append([]float64{*req.Outcome}, outcomes...)
	}
	if req.RequestID == "" || len(outcomes) == 0 {
		return badRequest("feedback needs \"request_id\" and \"outcome\" (or \"outcomes\")")
	}
	for i, v := range outcomes {
		// Scores are in [0,1] (anything else is invalid_output), so an outcome
		// outside it would only skew the error the champion and challenger are
		// compared on.
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1 {
			return badRequest(fmt.Sprintf("outcome %d is %v: want a number from 0 to 1, as scores are", i, v))
		}
	}
	if err := s.Join.Feedback(req.RequestID, outcomes); err != nil {
		if errors.Is(err, monitor.ErrUnknownRequest) {
			return &requestError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("request_id %q: %v", truncate(req.RequestID, 40), err)}
		}
		return badRequest(err.Error())
	}
	return c.NoContent(http.StatusNoContent)
}

// expect announces a request to the batcher as soon as its body is read, so that
// a batch about to run waits for it (nil without a batcher).
func (s *Scorer) expect() *loader.Arrival {
	if s.Batcher == nil {
		return nil
	}
	return s.Batcher.Expect()
}

// answer takes a turn, scores the rows and counts the outcome: what /v1/score and
// the OIP v2 infer route share once they have decoded their rows. arrival is the
// request's announcement to the batcher, if any; pin the session a versioned
// request asked for, if any. Nothing holds on to flat once answer returns, so
// the caller may reuse it.
func (s *Scorer) answer(ctx context.Context, m *Served, flat []float32, n int, key string, budget time.Duration, arrival *loader.Arrival, pin *pinned) (outcome, error) {
	start := time.Now()
	if err := s.admit(ctx, budget, arrival); err != nil {
		return outcome{}, err
	}
	out, err := s.scoreFlat(m, flat, n, key, budget, arrival, pin)
	s.leave()
	if err != nil {
		return outcome{}, err
	}
	s.observe(m, out, flat, n, start)
	return out, nil
}

func (s *Scorer) reject(err error) error {
	if re, ok := err.(*requestError); ok {
		s.metrics.rejected.WithLabelValues(strconv.Itoa(re.status)).Inc()
	}
	return err
}

func (s *Scorer) observe(m *Served, out outcome, flat []float32, rows int, start time.Time) {
	latency := time.Since(start)
	if s.Recorder != nil {
		o := monitor.Observation{Version: out.attempted, Arm: out.arm, Rows: rows, Flat: flat, Error: out.reason == fallback.ReasonModelError, Latency: latency}
		if out.source == SourceModel {
			o.Scores = out.scores
		} else {
			o.Fallback = out.reason
		}
		s.Recorder.Observe(o)
	}
	series := s.metrics.answered(m.Name, out.arm, out.source)
	series.requests.Inc()
	series.rows.Add(float64(rows))
	series.latency.Observe(latency.Seconds())
	if out.source == SourceFallback {
		s.metrics.fallbacks.WithLabelValues(m.Name, out.arm, out.reason).Inc()
	}
}

func rowName(single bool, i int) string {
	if single {
		return "features"
	}
	return "row " + strconv.Itoa(i)
}

// outcome is how a request was answered.
type outcome struct {
	scores  []float32
	source  string
	reason  string
	arm     string
	version int
	// attempted is the version that was asked, even when the rules answered.
	attempted int
}

// errUnanswerable is returned when neither a session nor rules can answer.
var errUnanswerable = errors.New("unanswerable")

// scoreFlat answers rows laid out flat: from the arm the routing picks (or from
// pin's session, when a versioned request names one), within the budget, behind
// the breaker; from the rules when there is no session, it fails, runs out of
// budget, or any output is not a finite number in [0,1].
func (s *Scorer) scoreFlat(m *Served, flat []float32, n int, key string, budget time.Duration, arrival *loader.Arrival, pin *pinned) (outcome, error) {
	defer arrival.Abandon()
	r := m.Routing()
	out := outcome{arm: ArmChampion}
	slot := m.Slot
	if pin != nil {
		out.arm = pin.arm
	} else if r.Mode == "ab" && r.Traffic > 0 && pick(key, r.Traffic) {
		if _, _, ok := m.Candidate.Current(); ok {
			slot, out.arm = m.Candidate, ArmChallenger
		}
	}
	current, _, loaded := slot.Current()
	if pin != nil {
		current, loaded = pin.l.Version, true
	}
	if !loaded {
		out.reason = fallback.ReasonNoModel
	} else if !m.Breaker.Allow() {
		out.reason = fallback.ReasonCircuitOpen
		out.attempted = current
	} else {
		var res runResult
		var timedOut bool
		b := s.Batcher
		switch {
		case pin != nil:
			// On the very session asked for, by itself.
			o, err := pin.l.RunBudget(flat, n, budget)
			res, timedOut = runResult{o, pin.l.Version, err}, errors.Is(err, loader.ErrBudget)
		case b != nil && n <= b.MaxRows/4:
			r, ok := b.Submit(arrival, slot, flat, n, budget)
			res, timedOut = runResult{r.Out, r.Version, r.Err}, !ok
			if r.Rows > 0 {
				s.metrics.batchRows.Observe(float64(r.Rows))
			}
		default:
			if l := slot.Acquire(); l != nil {
				res, timedOut = runWithBudget(l, flat, n, budget)
			} else {
				res.err = loader.ErrNoSession
			}
		}
		out.version = res.version
		if out.version == 0 {
			out.version, _, _ = slot.Current()
		}
		out.attempted = out.version
		switch {
		case timedOut:
			out.reason = fallback.ReasonTimeout
		case errors.Is(res.err, loader.ErrNoSession):
			out.reason = fallback.ReasonNoModel
		case res.err != nil:
			m.Breaker.Record(false)
			out.reason = fallback.ReasonModelError
			s.Logger.Warn("session run failed", "model", m.Name, "version", out.version, "err", res.err)
		case !validScores(res.out):
			m.Breaker.Record(false)
			out.reason = fallback.ReasonInvalidOutput
		default:
			m.Breaker.Record(true)
			out.scores, out.source = res.out, SourceModel
		}
	}
	if out.source == SourceModel {
		if r.Blend < 1 && m.Rules != nil {
			w := float32(r.Blend)
			width := m.Rules.Features()
			for i := range out.scores {
				out.scores[i] = w*out.scores[i] + (1-w)*m.Rules.Score(flat[i*width:(i+1)*width])
			}
		}
		if r.Mode == "shadow" && r.Traffic > 0 && out.arm == ArmChampion && pick(key, r.Traffic) {
			s.shadow(m, flat, n, out.scores)
		}
		return out, nil
	}
	if m.Rules == nil {
		return out, &requestError{status: http.StatusServiceUnavailable, code: "unavailable", msg: fmt.Sprintf("model %s cannot answer (%s) and has no fallback rules", m.Name, out.reason), retryAfter: 1}
	}
	out.source, out.version = SourceFallback, 0
	out.scores = make([]float32, n)
	width := m.Rules.Features()
	for i := range out.scores {
		out.scores[i] = m.Rules.Score(flat[i*width : (i+1)*width])
	}
	return out, nil
}

// shadow scores the same rows on the challenger in the background and records how
// far it is from the champion; it never changes what the caller gets. At most a few
// shadow runs are in flight; beyond that, rows are not shadowed. It copies the rows,
// as the caller may reuse flat once the answer is out.
func (s *Scorer) shadow(m *Served, flat []float32, n int, champion []float32) {
	select {
	case s.shadowSem <- struct{}{}:
	default:
		return
	}
	l := m.Candidate.Acquire()
	if l == nil {
		<-s.shadowSem
		return
	}
	champ := append([]float32(nil), champion...)
	flat = append([]float32(nil), flat...)
	go func() {
		defer func() { <-s.shadowSem }()
		out, err := l.Run(flat, n)
		version := l.Version
		l.Release()
		if err != nil {
			return
		}
		h := s.metrics.shadow.WithLabelValues(m.Name)
		for i, v := range out {
			h.Observe(math.Abs(float64(v - champ[i])))
		}
		if s.Recorder != nil {
			s.Recorder.ObserveShadow(version, out, champ)
		}
	}()
}

// pinned is the session a versioned request asked for (held until it is
// answered) and the arm whose slot holds it.
type pinned struct {
	l   *loader.Loaded
	arm string
}

type runResult struct {
	out     []float32
	version int
	err     error
}

// runWithBudget runs the session on the caller's goroutine, asking ONNX Runtime to
// stop when the budget runs out, and releases l.
func runWithBudget(l *loader.Loaded, flat []float32, n int, budget time.Duration) (runResult, bool) {
	out, err := l.RunBudget(flat, n, budget)
	r := runResult{out, l.Version, err}
	l.Release()
	if errors.Is(err, loader.ErrBudget) {
		return runResult{}, true
	}
	return r, false
}

// pick reports whether a request falls in the challenger's share: by a stable hash
// of its key (the same key always lands on the same side), or at random without one.
func pick(key string, percent float64) bool {
	if percent >= 100 {
		return true
	}
	if key == "" {
		return rand.Float64()*100 < percent
	}
	return keyFraction(key)*100 < percent
}

// keyFraction maps a key to [0,1) uniformly: FNV-1a, then a splitmix64 finaliser
// so that similar keys spread.
func keyFraction(key string) float64 {
	h := fnv.New64a()
	io.WriteString(h, key)
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func validScores(out []float32) bool {
	for _, v := range out {
		if !(v >= 0 && v <= 1) { // false for NaN too
			return false
		}
	}
	return true
}

// DecodeScoreRequest decodes a /v1/score body the way the scorer does: one JSON
// object, no unknown fields, nothing after it; directly when it has the plain
// shape (readScoreRequest), with encoding/json otherwise. (make bench's null-model handler
// uses it too, so the two are compared on the same decoding.)
func DecodeScoreRequest(data []byte, req *ScoreRequest) error {
	if readScoreRequest(data, req) {
		return nil
	}
	*req = ScoreRequest{}
	return decodeStrict(data, req)
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// explainBody says why a JSON body did not decode, in the request's terms rather
// than Go's ("outcome must be a number, not string").
func explainBody(data []byte, err error) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "body is empty; want a JSON object"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: unexpected end of input"
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + field
	}
	return explainJSON(err)
}

// explainScoreError turns a decode failure into a message that names the row and
// position of the first value that is not a number, when there is one.
func explainScoreError(data []byte, err error) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "body is empty; want {\"features\":[…]} or {\"rows\":[[…],…]}"
	}
	if msg, bad := firstBadFeature(data); bad {
		return msg
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "malformed request: " + explainJSON(err)
	}
	return explainBody(data, err)
}

// firstBadFeature names the first feature value that is not a finite number.
func firstBadFeature(data []byte) (string, bool) {
	var loose struct {
		Features []json.RawMessage   `json:"features"`
		Rows     [][]json.RawMessage `json:"rows"`
	}
	if json.Unmarshal(data, &loose) != nil {
		return "", false
	}
	if at, v := firstNonNumber(loose.Features); at >= 0 {
		return fmt.Sprintf("features position %d: %s is not a finite number", at, truncate(string(v), 40)), true
	}
	for i, r := range loose.Rows {
		if at, v := firstNonNumber(r); at >= 0 {
			return fmt.Sprintf("row %d position %d: %s is not a finite number", i, at, truncate(string(v), 40)), true
		}
	}
	return "", false
}

func firstNonNumber(vals []json.RawMessage) (int, json.RawMessage) {
	for i, v := range vals {
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return i, v
		}
	}
	return -1, nil
}
