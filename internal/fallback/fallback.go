// Package fallback holds the rule-based scores a scorer answers with when no
// verified model can: one rule set per model name, documented next to its code.
package fallback

import "fmt"

// Reasons a response may carry with source "fallback".
const (
	ReasonNoModel       = "no_model"
	ReasonModelError    = "model_error"
	ReasonInvalidOutput = "invalid_output"
	ReasonTimeout       = "timeout"
	ReasonCircuitOpen   = "circuit_open"
)

// Rules scores one row of features without a model.
type Rules interface {
	// Features is the row width the rules expect.
	Features() int
	// Score returns a value in [0,1].
	Score(row []float32) float32
}

// For returns the rules for a model, or an error when the model has none.
func For(model string) (Rules, error) {
	switch model {
	case "calling-score":
		return CallingScore{}, nil
	}
	return nil, fmt.Errorf("no fallback rules for model %q", model)
}

// Calling-score feature layout: every feature is scaled to [0,1].
const (
	UserDims    = 12 // features 0–11: the user's preference dimensions
	SpotDims    = 12 // features 12–23: the spot's matching dimensions, paired with the user's
	ContextDims = 10 // features 24–33: context (weather, crowd, distance, …)
	TimingDims  = 5  // features 34–38: timing (hour fit, day fit, recency, …)

	CallingScoreFeatures = UserDims + SpotDims + ContextDims + TimingDims
)

// CallingScore is the calling-score rule set:
//
//	alignment = 1 − mean over i<12 of |user_i − spot_i|
//	context   = mean of the 10 context features
//	timing    = mean of the 5 timing features
//	score     = clamp(0.6·alignment + 0.25·context + 0.15·timing, 0, 1)
//
// Inputs outside [0,1] are clamped first, so one wild feature moves the score by
// at most its weight.
type CallingScore struct{}

// Features implements Rules.
func (CallingScore) Features() int { return CallingScoreFeatures }

// Score implements Rules.
func (CallingScore) Score(row []float32) float32 {
	var diff, ctx, timing float32
	for i := 0; i < UserDims; i++ {
		d := clamp(row[i]) - clamp(row[UserDims+i])
		if d < 0 {
			d = -d
		}
		diff += d
	}
	for i := UserDims + SpotDims; i < UserDims+SpotDims+ContextDims; i++ {
		ctx += clamp(row[i])
	}
	for i := UserDims + SpotDims + ContextDims; i < CallingScoreFeatures; i++ {
		timing += clamp(row[i])
	}
	alignment := 1 - diff/UserDims
	return clamp(0.6*alignment + 0.25*ctx/ContextDims + 0.15*timing/TimingDims)
}

func clamp(v float32) float32 {
	switch {
	case v != v: // NaN
		return 0
	case v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}
