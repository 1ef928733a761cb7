package monitor

import (
	"errors"
	"sync"
	"time"
)

// ErrUnknownRequest means feedback named a request the join no longer holds.
var ErrUnknownRequest = errors.New("unknown or expired request_id")

type served struct {
	version int
	arm     string
	scores  []float32
	at      time.Time
}

// Join remembers what each recent request was answered, so outcomes reported
// later (POST /v1/feedback) can be scored per version and arm. It holds at most
// Capacity requests, forgetting the oldest first.
type Join struct {
	Recorder *Recorder
	mu       sync.Mutex
	byID     map[string]served
	order    []string
	next     int
}

// NewJoin returns a join of the given capacity feeding rec.
func NewJoin(rec *Recorder, capacity int) *Join {
	return &Join{Recorder: rec, byID: make(map[string]served, capacity), order: make([]string, capacity)}
}

// Remember records what request id was answered (model answers only).
func (j *Join) Remember(id string, version int, arm string, scores []float32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if old := j.order[j.next]; old != "" {
		delete(j.byID, old)
	}
	j.order[j.next] = id
	j.next = (j.next + 1) % len(j.order)
	j.byID[id] = served{version: version, arm: arm, scores: scores, at: time.Now()}
}

// Feedback joins outcomes (one per row) to request id and records the errors.
// A request gets one feedback; a second is refused as unknown.
func (j *Join) Feedback(id string, outcomes []float64) error {
	j.mu.Lock()
	s, ok := j.byID[id]
	if ok {
		delete(j.byID, id)
	}
	j.mu.Unlock()
	if !ok {
		return ErrUnknownRequest
	}
	if len(outcomes) != len(s.scores) {
		return errors.New("outcome count does not match the rows of the request")
	}
	j.Recorder.ObserveOutcomes(s.version, s.arm, s.scores, outcomes)
	return nil
}
