package monitor

import (
	"errors"
	"math"
	"testing"
)

func TestJoinFeedback(t *testing.T) {
	rec := NewRecorder()
	j := NewJoin(rec, 3)
	one := j.Remember(4, "champion", []float32{0.25})
	many := j.Remember(5, "challenger", []float32{0.5, 0.75})
	if one == "" || many == "" || one == many {
		t.Fatalf("request ids %q and %q", one, many)
	}
	if err := j.Feedback(one, []float64{1}); err != nil {
		t.Fatal(err)
	}
	if err := j.Feedback(many, []float64{1}); err == nil || errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("one outcome for a two-row answer: %v", err)
	}
	// Refused feedback uses nothing up; accepted feedback is taken once.
	if err := j.Feedback(many, []float64{0, 1}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{one, many, "zz", "", "123"} {
		if err := j.Feedback(id, []float64{1}); !errors.Is(err, ErrUnknownRequest) {
			t.Errorf("feedback for %q: %v, want ErrUnknownRequest", id, err)
		}
	}
	got := map[accKey]*Window{}
	for _, w := range rec.Flush() {
		got[accKey{w.Version, w.Arm}] = &w
	}
	c, ch := got[accKey{4, "champion"}], got[accKey{5, "challenger"}]
	if c == nil || c.Outcomes != 1 || math.Abs(c.OutcomeAE-0.75) > 1e-6 {
		t.Errorf("champion window %+v, want 1 outcome with absolute error 0.75", c)
	}
	if ch == nil || ch.Outcomes != 2 || math.Abs(ch.OutcomeSE-(0.25+0.0625)) > 1e-6 {
		t.Errorf("challenger window %+v, want 2 outcomes with squared error 0.3125", ch)
	}
}

func TestJoinForgetsTheOldest(t *testing.T) {
	j := NewJoin(NewRecorder(), 3)
	var ids []string
	for i := range 5 {
		ids = append(ids, j.Remember(1, "champion", []float32{float32(i) / 10, 0}))
	}
	for i, id := range ids {
		err := j.Feedback(id, []float64{0, 0})
		if forgotten := i < 2; forgotten != errors.Is(err, ErrUnknownRequest) {
			t.Errorf("answer %d of 5 with capacity 3: feedback gave %v", i, err)
		}
	}
	if len(j.many) != 0 {
		t.Errorf("after every feedback the join still holds %d multi-row answers", len(j.many))
	}
	// Ids name a place in the ring, but only the answer now there.
	j = NewJoin(NewRecorder(), 1)
	first := j.Remember(1, "champion", []float32{0.5})
	second := j.Remember(1, "champion", []float32{0.5})
	if first == second {
		t.Fatalf("two answers at the same place got the same id %s", first)
	}
	if err := j.Feedback(first, []float64{1}); !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("feedback for an overwritten answer: %v", err)
	}
	if err := j.Feedback(second, []float64{1}); err != nil {
		t.Errorf("feedback for the answer in its place: %v", err)
	}
}
