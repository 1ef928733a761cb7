// Package predlog holds the prediction log's wire types: the rows a scorer
// samples from answered requests, the outcomes that arrive later through
// feedback, and the batch that carries both to the control plane. It has no
// server, storage or ONNX Runtime dependency, so scorers and the control
// plane import it alike.
package predlog

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Limits of one batch. A scorer ships at most MaxBatchRows rows and outcomes
// together in one POST /api/v1/logs of at most MaxBatchBytes.
const (
	MaxBatchRows  = 10000
	MaxBatchBytes = 8 << 20
	// MaxFeatures bounds a row's feature vector.
	MaxFeatures = 4096
	// MaxIDLength bounds request ids, routing keys and names.
	MaxIDLength = 256
)

// ErrInvalid marks a batch the control plane refuses.
var ErrInvalid = errors.New("invalid prediction log batch")

// Row is one sampled, answered prediction.
type Row struct {
	Model      string    `json:"model"`
	Version    int       `json:"version"`
	Arm        string    `json:"arm,omitempty"`
	Source     string    `json:"source,omitempty"` // "model" or "fallback"
	RoutingKey string    `json:"routing_key,omitempty"`
	RequestID  string    `json:"request_id"`
	Time       time.Time `json:"time"`
	Features   []float32 `json:"features"`
	Answer     float64   `json:"answer"`
}

// Outcome is what really happened for a request id, recorded when feedback
// arrives (possibly hours after the row was answered).
type Outcome struct {
	Model     string    `json:"model"`
	RequestID string    `json:"request_id"`
	Time      time.Time `json:"time"`
	Outcome   float64   `json:"outcome"`
}

// Batch is what a scorer ships: rows, outcomes, or both. Node names the
// shipping scorer; the control plane checks it against the token's binding.
type Batch struct {
	Node     string    `json:"node"`
	Rows     []Row     `json:"rows,omitempty"`
	Outcomes []Outcome `json:"outcomes,omitempty"`
}

// ExportRow is one row of an export: a logged row joined with its outcome.
type ExportRow struct {
	Row
	HasOutcome bool    `json:"has_outcome"`
	Outcome    float64 `json:"outcome,omitempty"`
}

// nameRE is the registry's model name rule (kept here so scorers need no registry).
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate refuses a batch that is empty, too large, or holds a row or
// outcome that could not be stored or joined.
func (b *Batch) Validate() error {
	n := len(b.Rows) + len(b.Outcomes)
	if n == 0 {
		return fmt.Errorf("%w: no rows and no outcomes", ErrInvalid)
	}
	if n > MaxBatchRows {
		return fmt.Errorf("%w: %d rows and outcomes, more than the %d of one batch", ErrInvalid, n, MaxBatchRows)
	}
	if len(b.Node) > MaxIDLength {
		return fmt.Errorf("%w: node name longer than %d", ErrInvalid, MaxIDLength)
	}
	for i, r := range b.Rows {
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: row %d: %v", ErrInvalid, i, err)
		}
	}
	for i, o := range b.Outcomes {
		if err := o.validate(); err != nil {
			return fmt.Errorf("%w: outcome %d: %v", ErrInvalid, i, err)
		}
	}
	return nil
}

func (r *Row) validate() error {
	switch {
	case !nameRE.MatchString(r.Model):
		return fmt.Errorf("model %q is not a model name", truncate(r.Model))
	case r.Version < 0:
		return fmt.Errorf("version %d is negative", r.Version)
	case r.RequestID == "" || len(r.RequestID) > MaxIDLength:
		return fmt.Errorf("request id must be 1 to %d bytes", MaxIDLength)
	case len(r.RoutingKey) > MaxIDLength || len(r.Arm) > MaxIDLength || len(r.Source) > MaxIDLength:
		return fmt.Errorf("arm, source and routing key are at most %d bytes", MaxIDLength)
	case !inRange(r.Time):
		return fmt.Errorf("time %s is missing or outside %d–%d", r.Time.Format(time.RFC3339), minYear, maxYear)
	case len(r.Features) == 0 || len(r.Features) > MaxFeatures:
		return fmt.Errorf("%d features (want 1 to %d)", len(r.Features), MaxFeatures)
	case math.IsNaN(r.Answer) || math.IsInf(r.Answer, 0):
		return errors.New("answer is not finite")
	}
	for j, f := range r.Features {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return fmt.Errorf("feature %d is not finite", j)
		}
	}
	return nil
}

func (o *Outcome) validate() error {
	switch {
	case !nameRE.MatchString(o.Model):
		return fmt.Errorf("model %q is not a model name", truncate(o.Model))
	case o.RequestID == "" || len(o.RequestID) > MaxIDLength:
		return fmt.Errorf("request id must be 1 to %d bytes", MaxIDLength)
	case !inRange(o.Time):
		return fmt.Errorf("time %s is missing or outside %d–%d", o.Time.Format(time.RFC3339), minYear, maxYear)
	case math.IsNaN(o.Outcome) || math.IsInf(o.Outcome, 0):
		return errors.New("outcome is not finite")
	}
	return nil
}

// Times are stored as Unix nanoseconds, which hold years 1678 to 2262; a
// row's time must fall well inside.
const minYear, maxYear = 2000, 2200

func inRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= minYear && y < maxYear
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ExportSummary counts what an export read and wrote: Files and Logged
// (rows of the log in range), Outcomes read, Rows written, Joined (rows
// written with an outcome), and the time of the first and last row written.
type ExportSummary struct {
	Files    int       `json:"files"`
	Logged   int       `json:"logged"`
	Outcomes int       `json:"outcomes"`
	Rows     int       `json:"rows"`
	Joined   int       `json:"joined"`
	First    time.Time `json:"first,omitzero"`
	Last     time.Time `json:"last,omitzero"`
}

// ExportLine is one line of GET /api/v1/models/{m}/export (JSON lines): a row,
// or, last, End (the summary) or Error (the export stopped; discard it).
type ExportLine struct {
	*ExportRow
	End   *ExportSummary `json:"end,omitempty"`
	Error string         `json:"error,omitempty"`
}

// Stored is the control plane's answer to a shipped batch: what it stored,
// and in which files.
type Stored struct {
	Rows     int      `json:"rows"`
	Outcomes int      `json:"outcomes"`
	Files    []string `json:"files"`
}

// ExportFilter selects the rows of an export. Zero fields select everything.
type ExportFilter struct {
	Since, Until     time.Time // rows answered at or after Since and before Until
	Version          int
	WithOutcomesOnly bool
}
