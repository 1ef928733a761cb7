package scorerapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/scoring"
	"github.com/modelops/modelops/internal/wire"
)

// Names the scoring core gives arms and sources, as the API answers them.
const (
	ArmProduction  = scoring.ArmProduction
	ArmCanary      = scoring.ArmCanary
	SourceModel    = scoring.SourceModel
	SourceFallback = scoring.SourceFallback
)

// Served is one model a scorer answers for (see scoring.Model).
type Served = scoring.Model

// Routing is how a model's traffic is split and blended (see scoring.Routing).
type Routing = scoring.Routing

// NewServed returns a model with empty slots and no canary.
func NewServed(name string, rules fallback.Rules) *Served { return scoring.NewModel(name, rules) }

// Scorer serves /v1/score and the Open Inference Protocol v2 over a scoring
// service: it reads requests, calls Score, and writes answers or maps errors.
// The service's settings (Budget, MaxRows, MaxInFlight, MaxQueue, Batcher,
// Recorder, Join) are its fields, set before the first request.
type Scorer struct {
	*scoring.Service
	// MaxBodyBytes bounds a score request body (default 1 MiB).
	MaxBodyBytes int64
	// APIKeys, when set, are required on scoring and feedback (Authorization:
	// Bearer KEY or X-API-Key: KEY).
	APIKeys []string
}

// NewScorer returns a scorer API for the given models; the first is the default.
func NewScorer(log *slog.Logger, models ...*Served) *Scorer {
	return &Scorer{Service: scoring.New(log, models...), MaxBodyBytes: 1 << 20}
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

func (s *Scorer) ready(x exchange) error {
	if ok, name := s.Ready(); !ok {
		return x.json(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "model": name})
	}
	return x.json(http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Scorer) status(x exchange) error {
	out := []wire.ModelStatus{}
	for _, m := range s.Models() {
		v, d, _ := m.Production.Current()
		cv, _, _ := m.Canary.Current()
		r := m.Routing()
		st := wire.ModelStatus{Model: m.Name, Version: v, Digest: d, CanaryVersion: cv, Traffic: r.Traffic, Mode: r.Mode, Blend: r.Blend,
			Swaps: m.Production.Swaps() + m.Canary.Swaps(), Destroyed: m.Production.Destroyed() + m.Canary.Destroyed(),
			Breaker: m.BreakerState(m.Production), Fallback: m.Rules != nil, Ready: m.Ready()}
		if cv != 0 {
			st.CanaryBreaker = m.BreakerState(m.Canary)
		}
		if m.Status != nil {
			st.Sync = m.Status()
		}
		out = append(out, st)
	}
	return x.json(http.StatusOK, map[string]any{"models": out})
}

// maxBudget bounds the latency budget a request may ask for.
const maxBudget = scoring.MaxBudget

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

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
	arrival := s.Expect()
	defer arrival.Abandon()
	var req wire.ScoreRequest
	if err := DecodeScoreRequest(body, &req); err != nil {
		return s.rejectFor("", badRequest(explainScoreError(body, err)))
	}
	// encoding/json reads null as 0 without complaint; a null feature is bad input.
	if bytes.Contains(body, []byte("null")) {
		if msg, bad := firstBadFeature(body); bad {
			return s.rejectFor(req.Model, badRequest(msg))
		}
	}
	m, ok := s.Model(req.Model)
	if !ok {
		name := req.Model
		if name == "" {
			name = s.Default
		}
		return s.rejectFor("", &requestError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("unknown model %q", clip(name, 80))})
	}
	budget := s.Budget
	if req.BudgetMS != nil {
		if !(*req.BudgetMS > 0) || *req.BudgetMS > float64(maxBudget.Milliseconds()) {
			return s.rejectFor(m.Name, badRequest(fmt.Sprintf("budget_ms must be above 0 and at most %d", maxBudget.Milliseconds())))
		}
		budget = time.Duration(*req.BudgetMS * float64(time.Millisecond))
	}
	single := req.Features != nil
	n := len(req.Rows)
	switch {
	case single && req.Rows != nil:
		return s.rejectFor(m.Name, badRequest("send \"features\" (one row) or \"rows\" (many), not both"))
	case single:
		n = 1
	case n == 0:
		return s.rejectFor(m.Name, badRequest("no input: send {\"features\":[…]} or {\"rows\":[[…],…]}"))
	case n > s.MaxRows:
		return s.rejectFor(m.Name, badRequest(fmt.Sprintf("%d rows, at most %d per request", n, s.MaxRows)))
	}
	width := m.Width()
	if width == 0 {
		return s.rejectFor(m.Name, &requestError{status: http.StatusServiceUnavailable, code: "unavailable", msg: fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name), retryAfter: 1})
	}
	// The rows go flat into a pooled buffer: nothing holds on to it once Score
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
			return s.rejectFor(m.Name, badRequest(fmt.Sprintf("%s has %d %s, model %s takes %d", rowName(single, i), len(r), numbers, m.Name, width)))
		}
		for j, v := range r {
			f := float32(v)
			if math.IsInf(float64(f), 0) || math.IsNaN(v) {
				return s.rejectFor(m.Name, badRequest(fmt.Sprintf("%s position %d: %g is outside the float32 range", rowName(single, i), j, v)))
			}
			flat = append(flat, f)
		}
	}
	out, err := s.Score(x.context(), scoring.Request{Model: m.Name, Flat: flat, Rows: n, Key: req.Key, Budget: budget,
		NoFallback: req.Fallback != nil && !*req.Fallback, Arrival: arrival})
	if err != nil {
		return scoreError(err)
	}
	resp := wire.ScoreResponse{Model: m.Name, Source: out.Source, Version: out.Version, Arm: out.Arm, Reason: out.Reason, RequestID: out.RequestID}
	switch {
	case single && out.Outputs == 1 && len(out.Scores) == 1:
		resp.Score = &out.Scores[0]
	case out.Outputs > 1:
		resp.Scores, resp.Shape = out.Scores, []int64{int64(n), int64(out.Outputs)}
	default:
		resp.Scores = out.Scores
	}
	if len(out.Tensors) > 1 {
		resp.Outputs, resp.Shapes = map[string]any{}, map[string][]int64{}
		for _, t := range out.Tensors {
			resp.Outputs[t.Name], resp.Shapes[t.Name] = t.Data, t.Shape
		}
	}
	return x.json(http.StatusOK, resp)
}

// scoreError maps an error of scoring.Service.Score (which has counted it) to
// the API's.
func scoreError(err error) error {
	var e *scoring.Error
	if !errors.As(err, &e) {
		return err
	}
	code := "invalid_request"
	switch {
	case errors.Is(e, scoring.ErrUnknownModel), errors.Is(e, scoring.ErrUnknownVersion):
		code = "not_found"
	case errors.Is(e, scoring.ErrQueueFull), errors.Is(e, scoring.ErrNoCapacity):
		code = "over_capacity"
	case errors.Is(e, scoring.ErrUnavailable):
		code = "unavailable"
	}
	return &requestError{status: scoring.Status(e), code: code, msg: e.Msg, retryAfter: e.RetryAfter}
}

// feedbackKeyed is POST /v1/feedback: the API key, before the body is read,
// then feedback.
func (s *Scorer) feedbackKeyed(x exchange) error {
	if !s.keyOK(x) {
		return s.reject(&requestError{status: http.StatusUnauthorized, code: "unauthenticated", msg: missingKey})
	}
	return s.feedback(x)
}

func (s *Scorer) feedback(x exchange) error {
	var joins []*report.Join
	for _, m := range s.Models() {
		if m.Join != nil {
			joins = append(joins, m.Join)
		}
	}
	if s.Join != nil {
		joins = append(joins, s.Join)
	}
	if len(joins) == 0 {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this scorer keeps no answers for feedback"}
	}
	body, err := x.body(s.MaxBodyBytes)
	if err != nil {
		return err
	}
	var req wire.FeedbackRequest
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
		// outside it would only skew the error production and the canary are
		// compared on.
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1 {
			return badRequest(fmt.Sprintf("outcome %d is %v: want a number from 0 to 1, as scores are", i, v))
		}
	}
	// A request id names an answer of one model's join: ask each.
	for _, j := range joins {
		if err = j.Feedback(req.RequestID, outcomes); !errors.Is(err, report.ErrUnknownRequest) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, report.ErrUnknownRequest) {
			return &requestError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("request_id %q: %v", clip(req.RequestID, 40), err)}
		}
		return badRequest(err.Error())
	}
	return x.blob(http.StatusNoContent, "", nil)
}

// reject counts a refusal made before any model is known, and returns it.
func (s *Scorer) reject(err error) error {
	if re, ok := err.(*requestError); ok {
		s.Metrics().Refused(re.status, re.code)
	}
	return err
}

// rejectFor counts a refusal of a request for model (as it named it; "" for
// the default), and returns it.
func (s *Scorer) rejectFor(model string, err error) error {
	if re, ok := err.(*requestError); ok {
		reason := re.code
		if re.status == http.StatusBadRequest {
			reason = scoring.ReasonOf(scoring.ErrInvalidInput)
		}
		s.Refused(model, re.status, reason)
	}
	return err
}

func rowName(single bool, i int) string {
	if single {
		return "features"
	}
	return "row " + strconv.Itoa(i)
}

// DecodeScoreRequest decodes a /v1/score body the way the scorer does: one JSON
// object, no unknown fields, nothing after it; directly when it has the plain
// shape (readScoreRequest), with encoding/json otherwise. (make bench's null-model handler
// uses it too, so the two are compared on the same decoding.)
func DecodeScoreRequest(data []byte, req *wire.ScoreRequest) error {
	if libraryJSON.Load() {
		if libraryDecodeStrict(data, req) == nil {
			return nil
		}
	} else if readScoreRequest(data, req) {
		return nil
	}
	*req = wire.ScoreRequest{}
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
		return fmt.Sprintf("features position %d: %s is not a finite number", at, clip(string(v), 40)), true
	}
	for i, r := range loose.Rows {
		if at, v := firstNonNumber(r); at >= 0 {
			return fmt.Sprintf("row %d position %d: %s is not a finite number", i, at, clip(string(v), 40)), true
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
