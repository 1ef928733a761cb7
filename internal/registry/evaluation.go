package registry

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// EventEvaluated is recorded when an evaluation on the same data is stored.
const EventEvaluated = "evaluated"

// Evaluation is the latest comparison of a model's versions on the same rows
// (`modelctl eval --record`), kept on the model: the dashboard compares versions
// with it rather than with cards measured on different test sets.
type Evaluation struct {
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
	// Data names the rows (a file name, as the evaluator gave it).
	Data     string `json:"data"`
	Rows     int    `json:"rows"`
	Versions []int  `json:"versions"`
	// Confidence of the differences' intervals (0.95).
	Confidence  float64          `json:"confidence"`
	Figures     []EvalFigures    `json:"figures"`
	Differences []EvalDifference `json:"differences"`
}

// EvalFigures are one scorer's errors ("v2", "rules").
type EvalFigures struct {
	Name             string  `json:"name"`
	MSE              float64 `json:"mse"`
	MAE              float64 `json:"mae"`
	R2               float64 `json:"r2"`
	CalibrationError float64 `json:"calibration_error"`
}

// EvalDifference is one scorer's MSE minus the baseline's, with its interval.
type EvalDifference struct {
	Name     string  `json:"name"`
	Baseline string  `json:"baseline"`
	MSE      float64 `json:"mse_difference"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
	Verdict  string  `json:"verdict"`
}

// MaxEvalScorers bounds the scorers of a stored evaluation.
const MaxEvalScorers = 17

// check refuses an evaluation that cannot be one: no rows, too many scorers,
// names or texts past their bounds, numbers that are not finite.
func (e *Evaluation) check() error {
	if e.Rows <= 0 {
		return Invalidf("evaluation: rows %d: want at least 1", e.Rows)
	}
	if len(e.Versions) < 1 || len(e.Versions) > MaxEvalScorers || len(e.Figures) > MaxEvalScorers || len(e.Differences) > MaxEvalScorers {
		return Invalidf("evaluation: want 1 to %d versions, figures and differences", MaxEvalScorers)
	}
	if len(e.Data) > 1024 || strings.ContainsFunc(e.Data, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Invalidf("evaluation: data: at most 1 KB without control characters")
	}
	if e.Confidence <= 0 || e.Confidence >= 1 {
		return Invalidf("evaluation: confidence %g: want between 0 and 1", e.Confidence)
	}
	name := func(s string) error {
		if s == "" || len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return Invalidf("evaluation: scorer name %q: want 1 to 64 bytes without control characters", s)
		}
		return nil
	}
	finite := func(xs ...float64) error {
		for _, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return Invalidf("evaluation: a figure is %g: want finite numbers", x)
			}
		}
		return nil
	}
	for _, f := range e.Figures {
		if err := name(f.Name); err != nil {
			return err
		}
		if err := finite(f.MSE, f.MAE, f.R2, f.CalibrationError); err != nil {
			return err
		}
	}
	for _, d := range e.Differences {
		if err := name(d.Name); err != nil {
			return err
		}
		if err := name(d.Baseline); err != nil {
			return err
		}
		if len(d.Verdict) > 64 {
			return Invalidf("evaluation: verdict: at most 64 bytes")
		}
		if err := finite(d.MSE, d.Low, d.High); err != nil {
			return err
		}
	}
	return nil
}

// RecordEvaluation keeps ev as the model's latest evaluation, with an event.
// Every version it names must be one of the model's.
func (r *Registry) RecordEvaluation(ctx context.Context, model string, ev Evaluation, actor string) (*Event, error) {
	if err := ev.check(); err != nil {
		return nil, err
	}
	ev.Actor, ev.Time = actorOr(actor), r.Now().UTC()
	return r.changeModel(ctx, model, 0, func(_ MetaTx, m *Model) (*Event, error) {
		names := make([]string, len(ev.Versions))
		for i, v := range ev.Versions {
			if v < 1 || v > m.Latest {
				return nil, fmt.Errorf("evaluation of %s v%d: %w", model, v, ErrNotFound)
			}
			names[i] = fmt.Sprintf("v%d", v)
		}
		m.Evaluation = &ev
		return &Event{Actor: ev.Actor, Model: model, Kind: EventEvaluated,
			Reason: fmt.Sprintf("%s on %d rows of %s", strings.Join(names, ", "), ev.Rows, ev.Data)}, nil
	})
}
