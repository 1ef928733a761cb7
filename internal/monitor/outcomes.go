package monitor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
)

// ErrUnknownRequest means feedback named a request the join no longer holds.
var ErrUnknownRequest = errors.New("unknown or expired request_id")

// answer is one remembered request: nothing in it points into the heap, so the
// collector never scans the ring, however large.
type answer struct {
	id      uint64
	version int32
	rows    int32   // 0: a free place
	score   float32 // the score of a one-row request
	arm     uint8   // index into Join.arms
}

// Join remembers what each recent request was answered, so outcomes reported
// later (POST /v1/feedback) can be scored per version and arm. It holds at most
// Capacity requests, forgetting the oldest first.
type Join struct {
	Recorder *Recorder
	mu       sync.Mutex
	// byID maps a request id to its place in ring.
	byID map[uint64]int32
	ring []answer
	arms []string
	// many holds the scores of requests of more than one row.
	many map[uint64][]float32
	next int
}

// NewJoin returns a join of the given capacity feeding rec.
func NewJoin(rec *Recorder, capacity int) *Join {
	capacity = max(1, capacity)
	return &Join{Recorder: rec, byID: make(map[uint64]int32, capacity), ring: make([]answer, capacity), many: map[uint64][]float32{}}
}

// Remember records a model answer and returns the request id that names it.
func (j *Join) Remember(version int, arm string, scores []float32) string {
	if len(scores) == 0 {
		return ""
	}
	a := answer{id: rand.Uint64(), version: int32(version), rows: int32(len(scores))}
	if len(scores) == 1 {
		a.score = scores[0]
	}
	j.mu.Lock()
	a.arm = j.armIndex(arm)
	for {
		if _, taken := j.byID[a.id]; !taken {
			break
		}
		a.id = rand.Uint64()
	}
	if old := j.ring[j.next]; old.rows > 0 {
		delete(j.byID, old.id)
		delete(j.many, old.id)
	}
	j.ring[j.next] = a
	j.byID[a.id] = int32(j.next)
	if len(scores) > 1 {
		j.many[a.id] = scores
	}
	j.next = (j.next + 1) % len(j.ring)
	j.mu.Unlock()
	return strconv.FormatUint(a.id, 16)
}

// Feedback joins outcomes (one per row) to request id and records the errors.
// A request gets one feedback; a second is refused as unknown. Feedback with the
// wrong number of outcomes is refused and uses nothing up.
func (j *Join) Feedback(id string, outcomes []float64) error {
	key, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return ErrUnknownRequest
	}
	j.mu.Lock()
	at, ok := j.byID[key]
	if !ok {
		j.mu.Unlock()
		return ErrUnknownRequest
	}
	a := j.ring[at]
	if int(a.rows) != len(outcomes) {
		j.mu.Unlock()
		return fmt.Errorf("%d outcomes for an answer of %d rows", len(outcomes), a.rows)
	}
	arm, scores := j.arms[a.arm], j.many[key]
	delete(j.byID, key)
	delete(j.many, key)
	j.ring[at].rows = 0
	j.mu.Unlock()
	if a.rows == 1 {
		scores = []float32{a.score}
	}
	j.Recorder.ObserveOutcomes(int(a.version), arm, scores, outcomes)
	return nil
}

// armIndex is arm's index in j.arms, added if new (j.mu held). Arms are few.
func (j *Join) armIndex(arm string) uint8 {
	for i, a := range j.arms {
		if a == arm {
			return uint8(i)
		}
	}
	j.arms = append(j.arms, arm)
	return uint8(len(j.arms) - 1)
}
