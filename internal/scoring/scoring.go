// Package scoring is the scorer's core, with no HTTP in it: a Service of many
// models, each with its deployment slots (production and canary), routing (A/B
// by key, shadow, blend), fallback rules when it has some, an output contract
// (from its card) and a circuit breaker per version. Every transport (REST,
// OIP v2) decodes a request, calls Service.Score and maps its typed errors.
package scoring

import (
	"errors"
	"fmt"
	"time"

	"github.com/modelops/modelops/internal/loader"
)

// Arms of traffic. The values are what responses, metrics and reports carry;
// the control plane's monitor and dashboard read them, so they keep the words
// the wire has always used until both sides move together.
const (
	ArmProduction = "champion"
	ArmCanary     = "challenger"
)

// Sources of an answer.
const (
	SourceModel    = "model"
	SourceFallback = "fallback"
)

// Error kinds every transport maps (see Error).
var (
	// ErrInvalidInput: the request is malformed; the message names the input
	// and position.
	ErrInvalidInput = errors.New("invalid input")
	// ErrUnknownModel: no model of that name on this scorer.
	ErrUnknownModel = errors.New("unknown model")
	// ErrUnknownVersion: the model has no such version loaded here.
	ErrUnknownVersion = errors.New("unknown version")
	// ErrUnavailable: neither a verified version nor rules can answer (or the
	// client refused a fallback answer).
	ErrUnavailable = errors.New("unavailable")
	// ErrQueueFull: admission refused the request, too many are waiting.
	ErrQueueFull = errors.New("queue full")
	// ErrNoCapacity: admission found no turn within the latency budget.
	ErrNoCapacity = errors.New("no capacity")
)

// Error is a refusal: its Kind is one of the Err values above, its message
// what the client reads.
type Error struct {
	Kind error
	Msg  string
	// RetryAfter, when above 0, is the seconds a client should wait.
	RetryAfter int
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

// Reason is the short name refusals are counted under in metrics and reports.
func (e *Error) Reason() string { return ReasonOf(e.Kind) }

// ReasonOf names an error kind for counting.
func ReasonOf(kind error) string {
	switch kind {
	case ErrInvalidInput:
		return "invalid_input"
	case ErrUnknownModel:
		return "unknown_model"
	case ErrUnknownVersion:
		return "unknown_version"
	case ErrUnavailable:
		return "unavailable"
	case ErrQueueFull:
		return "queue_full"
	case ErrNoCapacity:
		return "no_capacity"
	}
	return "other"
}

// Status is the HTTP status every transport answers an error of Score with
// (500 for an error that is not an *Error).
func Status(err error) int {
	switch {
	case errors.Is(err, ErrInvalidInput):
		return 400
	case errors.Is(err, ErrUnknownModel), errors.Is(err, ErrUnknownVersion):
		return 404
	case errors.Is(err, ErrQueueFull):
		return 429
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNoCapacity):
		return 503
	}
	return 500
}

// Invalid returns an ErrInvalidInput error.
func Invalid(format string, args ...any) *Error {
	return &Error{Kind: ErrInvalidInput, Msg: fmt.Sprintf(format, args...)}
}

// Request is rows of one model's input laid out flat (Rows × the model's
// width).
type Request struct {
	// Model is the model's name; "" is the service's default.
	Model string
	// Version, when above 0, pins the request to that version's session: it
	// answers by itself, under the arm that holds it, with no A/B draw.
	Version int
	Flat    []float32
	Rows    int
	// Key routes sticky A/B traffic; "" draws at random.
	Key string
	// Budget is the latency budget; 0 is the service's.
	Budget time.Duration
	// NoFallback refuses an answer from the rules: ErrUnavailable instead.
	NoFallback bool
	// Arrival is the request's announcement to the batcher (Service.Expect),
	// if it made one.
	Arrival *loader.Arrival
	// Inputs, when set instead of Flat, are named tensors of any servable
	// signature, each of shape [Rows,…]. The rules never answer them.
	Inputs []loader.Tensor
}

// Response is how a request was answered. Nothing in it points into the
// request: Flat may be reused once Score returns.
type Response struct {
	Model string
	// Scores are Rows × Outputs values.
	Scores  []float32
	Outputs int
	Source  string
	// Reason is why the rules answered.
	Reason string
	Arm    string
	// Version answered (0 for the rules).
	Version int
	// Attempted is the version that was asked, even when the rules answered:
	// fallbacks count against it.
	Attempted int
	// RequestID names a model answer for feedback ("" when none is kept).
	RequestID string
	// Tensors are every output of the model with its true shape, when the
	// version's signature is not one float32 output [batch,M] (Scores are
	// then the first float32 output's values, the output contract's).
	Tensors []loader.Tensor
}

// MaxBudget bounds the latency budget a request may ask for.
const MaxBudget = time.Minute
