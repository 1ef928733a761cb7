package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
)

// Served is one model a scorer answers for: the slot its verified sessions are
// published in, and its fallback rules (nil when the model has none).
type Served struct {
	Name  string
	Slot  *loader.Slot
	Rules fallback.Rules
	// Status, when set, reports how the node keeps the slot up to date.
	Status func() any
}

// width is the row width requests must carry: the loaded session's, else the
// rules'; 0 when neither is there.
func (m *Served) width(l *loader.Loaded) int {
	if l != nil {
		return l.Signature().Features()
	}
	if m.Rules != nil {
		return m.Rules.Features()
	}
	return 0
}

// Scorer serves /v1/score for a set of models.
type Scorer struct {
	Models map[string]*Served
	// Default answers requests that name no model.
	Default string
	Logger  *slog.Logger
	// MaxBodyBytes bounds a score request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxRows bounds the rows of one request (default 4096).
	MaxRows int
}

// NewScorer returns a scorer API for the given models; the first is the default.
func NewScorer(log *slog.Logger, models ...*Served) *Scorer {
	s := &Scorer{Models: map[string]*Served{}, Logger: log, MaxBodyBytes: 1 << 20, MaxRows: 4096}
	for i, m := range models {
		s.Models[m.Name] = m
		if i == 0 {
			s.Default = m.Name
		}
	}
	return s
}

// Handler returns the scorer's routes.
func (s *Scorer) Handler() http.Handler {
	e := newEcho(s.Logger)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.POST("/v1/score", s.score)
	e.GET("/v1/status", s.status)
	return e
}

// ready is true once every model can answer, from a session or from its rules.
// A swap never makes it false: the old session serves until the new one is in.
func (s *Scorer) ready(c echo.Context) error {
	for _, m := range s.Models {
		if _, _, ok := m.Slot.Current(); !ok && m.Rules == nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "model": m.Name})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// ModelStatus is what a scorer says of one model it serves.
type ModelStatus struct {
	Model     string `json:"model"`
	Version   int    `json:"version,omitempty"`
	Digest    string `json:"digest,omitempty"`
	Swaps     int64  `json:"swaps"`
	Destroyed int64  `json:"sessions_destroyed"`
	Fallback  bool   `json:"has_fallback"`
	Sync      any    `json:"sync,omitempty"`
}

func (s *Scorer) status(c echo.Context) error {
	var out []ModelStatus
	for _, m := range s.Models {
		v, d, _ := m.Slot.Current()
		st := ModelStatus{Model: m.Name, Version: v, Digest: d, Swaps: m.Slot.Swaps(), Destroyed: m.Slot.Destroyed(), Fallback: m.Rules != nil}
		if m.Status != nil {
			st.Sync = m.Status()
		}
		out = append(out, st)
	}
	return c.JSON(http.StatusOK, map[string]any{"models": out})
}

// ScoreRequest is one row in "features" or many in "rows".
type ScoreRequest struct {
	Model    string      `json:"model,omitempty"`
	Features []float64   `json:"features,omitempty"`
	Rows     [][]float64 `json:"rows,omitempty"`
}

// ScoreResponse answers a score request; Score for one row, Scores for many.
type ScoreResponse struct {
	Model   string    `json:"model"`
	Score   *float32  `json:"score,omitempty"`
	Scores  []float32 `json:"scores,omitempty"`
	Source  string    `json:"source"`
	Version int       `json:"version,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Sources.
const (
	SourceModel    = "model"
	SourceFallback = "fallback"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *Scorer) score(c echo.Context) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(c.Response(), c.Request().Body, s.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &requestError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is larger than %d bytes", s.MaxBodyBytes)}
		}
		return badRequest("reading body: " + err.Error())
	}
	var req ScoreRequest
	if err := decodeStrict(buf.Bytes(), &req); err != nil {
		return badRequest(explainScoreError(buf.Bytes(), err))
	}
	// encoding/json reads null as 0 without complaint; a null feature is bad input.
	if bytes.Contains(buf.Bytes(), []byte("null")) {
		if msg, bad := firstBadFeature(buf.Bytes()); bad {
			return badRequest(msg)
		}
	}
	name := req.Model
	if name == "" {
		name = s.Default
	}
	m, ok := s.Models[name]
	if !ok {
		return &requestError{http.StatusNotFound, "not_found", fmt.Sprintf("unknown model %q", truncate(name, 80))}
	}
	single := req.Features != nil
	rows := req.Rows
	switch {
	case single && rows != nil:
		return badRequest("send \"features\" (one row) or \"rows\" (many), not both")
	case single:
		rows = [][]float64{req.Features}
	case len(rows) == 0:
		return badRequest("no input: send {\"features\":[…]} or {\"rows\":[[…],…]}")
	case len(rows) > s.MaxRows:
		return badRequest(fmt.Sprintf("%d rows, at most %d per request", len(rows), s.MaxRows))
	}
	l := m.Slot.Acquire()
	if l != nil {
		defer l.Release()
	}
	width := m.width(l)
	if width == 0 {
		return &requestError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name)}
	}
	flat := make([]float32, 0, len(rows)*width)
	for i, r := range rows {
		if len(r) != width {
			return badRequest(fmt.Sprintf("%s has %d features, model %s takes %d", rowName(single, i), len(r), m.Name, width))
		}
		for j, v := range r {
			f := float32(v)
			if math.IsInf(float64(f), 0) || math.IsNaN(v) {
				return badRequest(fmt.Sprintf("%s position %d: %g is outside the float32 range", rowName(single, i), j, v))
			}
			flat = append(flat, f)
		}
	}
	scores, source, version, reason := m.scoreRows(l, flat, len(rows))
	if scores == nil {
		return &requestError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("model %s cannot answer (%s) and has no fallback rules", m.Name, reason)}
	}
	resp := ScoreResponse{Model: m.Name, Source: source, Version: version, Reason: reason}
	if single {
		resp.Score = &scores[0]
	} else {
		resp.Scores = scores
	}
	return c.JSON(http.StatusOK, resp)
}

func rowName(single bool, i int) string {
	if single {
		return "features"
	}
	return "row " + strconv.Itoa(i)
}

// scoreRows answers from the current session, or from the rules when there is no
// session, it fails, or any output is not a finite number in [0,1]. When neither
// can answer, scores is nil.
func (m *Served) scoreRows(l *loader.Loaded, flat []float32, n int) (scores []float32, source string, version int, reason string) {
	if l != nil {
		out, err := l.Run(flat, n)
		version = l.Version
		switch {
		case err != nil:
			reason = fallback.ReasonModelError
		case !validScores(out):
			reason = fallback.ReasonInvalidOutput
		default:
			return out, SourceModel, version, ""
		}
	} else {
		reason = fallback.ReasonNoModel
	}
	if m.Rules == nil {
		return nil, "", 0, reason
	}
	out := make([]float32, n)
	w := m.Rules.Features()
	for i := range out {
		out[i] = m.Rules.Score(flat[i*w : (i+1)*w])
	}
	return out, SourceFallback, 0, reason
}

func validScores(out []float32) bool {
	for _, v := range out {
		if !(v >= 0 && v <= 1) { // false for NaN too
			return false
		}
	}
	return true
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

// explainScoreError turns a decode failure into a message that names the row and
// position of the first value that is not a number, when there is one.
func explainScoreError(data []byte, err error) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "body is empty; want {\"features\":[…]} or {\"rows\":[[…],…]}"
	}
	if msg, bad := firstBadFeature(data); bad {
		return msg
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: unexpected end of input"
	}
	return "malformed request: " + err.Error()
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
