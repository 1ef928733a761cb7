package fallback

import (
	"math"
	"testing"
)

func row(user, spot, ctx, timing float32) []float32 {
	r := make([]float32, CallingScoreFeatures)
	for i := 0; i < UserDims; i++ {
		r[i], r[UserDims+i] = user, spot
	}
	for i := 24; i < 34; i++ {
		r[i] = ctx
	}
	for i := 34; i < 39; i++ {
		r[i] = timing
	}
	return r
}

func TestCallingScoreRules(t *testing.T) {
	rules, err := For("calling-score")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		row  []float32
		want float32
	}{
		{"perfect", row(0.5, 0.5, 1, 1), 1},
		{"opposed, dull context", row(0, 1, 0, 0), 0},
		{"aligned only", row(0.3, 0.3, 0, 0), 0.6},
		{"half everything", row(0, 0.5, 0.5, 0.5), 0.6*0.5 + 0.25*0.5 + 0.15*0.5},
		{"out of range clamps", row(-5, 7, 3, -1), 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rules.Score(tt.row)
			if math.Abs(float64(got-tt.want)) > 1e-6 {
				t.Fatalf("score = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCallingScoreAlignmentMatters(t *testing.T) {
	r := CallingScore{}
	if a, b := r.Score(row(0.2, 0.25, 0.5, 0.5)), r.Score(row(0.2, 0.9, 0.5, 0.5)); a <= b {
		t.Fatalf("aligned row scored %v, misaligned %v: alignment must raise the score", a, b)
	}
}

func TestUnknownModelHasNoRules(t *testing.T) {
	if _, err := For("churn"); err == nil {
		t.Fatal("For(churn) gave rules, want an error")
	}
}
