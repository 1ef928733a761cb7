package report

import (
	"errors"
	"math"
	"strings"
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

// Multi-row answers hold their scores, so a join bounds those too: past
// ScoresPerAnswer scores per answer of its capacity it forgets the oldest
// multi-row answers first, and its bookkeeping stays within the ring.
func TestJoinBoundsTheScoresItHolds(t *testing.T) {
	const capacity = 4
	j := NewJoin(NewRecorder(), capacity)
	rows := ScoresPerAnswer * capacity / 2 // two such answers fill the bound
	big := func() string { return j.Remember(1, "champion", make([]float32, rows)) }
	first, second := big(), big()
	single := j.Remember(1, "champion", []float32{0.5})
	third := big()
	if j.manyScores > j.maxScores || len(j.many) != 2 {
		t.Fatalf("holds %d scores in %d answers, bound %d", j.manyScores, len(j.many), j.maxScores)
	}
	if err := j.Feedback(first, make([]float64, rows)); !errors.Is(err, ErrUnknownRequest) {
		t.Errorf("the oldest multi-row answer past the bound: %v, want ErrUnknownRequest", err)
	}
	for name, id := range map[string]string{"second": second, "third": third} {
		if err := j.Feedback(id, make([]float64, rows)); err != nil {
			t.Errorf("%s answer, within the bound: %v", name, err)
		}
	}
	if err := j.Feedback(single, []float64{1}); err != nil {
		t.Errorf("a one-row answer holds no scores and stays: %v", err)
	}
	if j.manyScores != 0 || len(j.many) != 0 {
		t.Errorf("after feedback the join holds %d scores in %d answers", j.manyScores, len(j.many))
	}
	if id := j.Remember(1, "champion", make([]float32, j.maxScores+1)); id != "" {
		t.Errorf("an answer of more rows than the join holds got id %q", id)
	}
	// Small multi-row answers turning over the ring many times: the ids of
	// forgotten answers do not pile up.
	for range 10000 {
		j.Remember(1, "champion", []float32{0.1, 0.2})
	}
	if len(j.order) > capacity || len(j.many) > capacity {
		t.Errorf("after 10,000 answers: %d ids in order, %d answers held, capacity %d", len(j.order), len(j.many), capacity)
	}
}

// Request ids are 16 hex digits, zero-padded (a sixteenth of them start with a
// zero digit), and feedback finds each, padded or not.
func TestRequestIDsHaveOneWidth(t *testing.T) {
	j := NewJoin(NewRecorder(), 4096)
	padded := 0
	for i := range 4096 {
		id := j.Remember(1, "champion", []float32{0.5})
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("request id %q: want 16 lower-case hex digits", id)
		}
		if id[0] == '0' {
			padded++
			if i%2 == 0 { // the unpadded form names the same answer
				id = strings.TrimLeft(id, "0")
			}
		}
		if err := j.Feedback(id, []float64{1}); err != nil {
			t.Fatalf("feedback for %q: %v", id, err)
		}
	}
	if padded == 0 {
		t.Fatal("no id of 4096 started with a zero digit; the test saw no padding")
	}
}
