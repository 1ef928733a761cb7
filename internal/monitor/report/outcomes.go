package report

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
)

// ErrUnknownRequest means feedback named a request the join no longer holds.
var ErrUnknownRequest = errors.New("unknown or expired request_id, or its outcome was already given")

// answer is one remembered request: nothing in it points into the heap, so the
// collector never scans the ring, however large.
type answer struct {
	id      uint64
	version int32
	rows    int32   // 0: a free place
	score   float32 // the score of a one-row request
	arm     uint8   // index into Join.arms
}

// positionBits of a request id are its answer's place in the ring; the rest are
// random, so ids are not guessable and a place's next answer has another id.
const positionBits = 24

// MaxJoinCapacity is the most answers a Join can hold.
const MaxJoinCapacity = 1 << positionBits

// Join remembers what each recent request was answered, so outcomes reported
// later (POST /v1/feedback) can be scored per version and arm. It holds at most
// its capacity of requests, forgetting the oldest first, and at most
// ScoresPerAnswer times its capacity of multi-row answers' scores, forgetting the
// oldest multi-row answers first: without that bound, a capacity of 100,000
// answers of 4,096 rows would hold 1.6 GB. A request id names its place in the
// ring, so remembering and finding an answer take no map.
type Join struct {
	Recorder *Recorder
	// Outcomes, when set, hears of feedback: every one the join accepts
	// (held), and those for ids it no longer holds, which it takes when it
	// returns true (a prediction log records outcomes of rows it logged hours
	// ago; see internal/predlog/logship). A second feedback for an id the join
	// still knows is refused without it.
	Outcomes func(id string, outcomes []float64, held bool) bool
	mu       sync.Mutex
	ring     []answer
	next     int
	arms     []string
	// many holds the scores of requests of more than one row, by id; manyScores
	// counts them, up to maxScores.
	many                  map[uint64][]float32
	manyScores, maxScores int
	// order lists the ids in many, oldest first, and ids since forgotten.
	order []uint64
}

// ScoresPerAnswer is how many scores a Join holds for multi-row answers, per
// answer of its capacity: a request of more rows than a join holds in all gets no
// request id.
const ScoresPerAnswer = 16

// NewJoin returns a join of the given capacity (at most MaxJoinCapacity) feeding
// rec.
func NewJoin(rec *Recorder, capacity int) *Join {
	capacity = min(max(1, capacity), MaxJoinCapacity)
	return &Join{Recorder: rec, ring: make([]answer, capacity), many: map[uint64][]float32{}, maxScores: ScoresPerAnswer * capacity}
}

// Remember records a model answer and returns the request id that names it, or
// "" for an answer of more rows than the join can hold.
func (j *Join) Remember(version int, arm string, scores []float32) string {
	if len(scores) == 0 || len(scores) > j.maxScores {
		return ""
	}
	a := answer{version: int32(version), rows: int32(len(scores))}
	if len(scores) == 1 {
		a.score = scores[0]
	}
	random := rand.Uint64() &^ (MaxJoinCapacity - 1)
	j.mu.Lock()
	at := j.next
	j.next = (j.next + 1) % len(j.ring)
	if old := j.ring[at]; old.rows > 1 {
		j.forget(old.id)
	}
	a.id, a.arm = random|uint64(at), j.armIndex(arm)
	j.ring[at] = a
	if len(scores) > 1 {
		j.many[a.id] = scores
		j.manyScores += len(scores)
		j.order = append(j.order, a.id)
		// Forget the oldest multi-row answers over the bound, and drop the ids at
		// the front already forgotten (answered, or their place taken), so order
		// holds no more than the ring.
		for len(j.order) > 0 {
			id := j.order[0]
			_, live := j.many[id]
			if live && j.manyScores <= j.maxScores {
				break
			}
			j.order = j.order[1:]
			if live {
				j.forget(id)
				j.ring[id&(MaxJoinCapacity-1)].rows = 0
			}
		}
	}
	j.mu.Unlock()
	// Always 16 hex digits, zero-padded, so ids line up in logs and tables.
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], a.id)
	return hex.EncodeToString(b[:])
}

// forget drops a multi-row answer's scores (j.mu held).
func (j *Join) forget(id uint64) {
	if scores, ok := j.many[id]; ok {
		j.manyScores -= len(scores)
		delete(j.many, id)
	}
}

// Feedback joins outcomes (one per row) to request id and records the errors.
// A request gets one feedback; a second is refused as unknown. Feedback with the
// wrong number of outcomes is refused and uses nothing up.
func (j *Join) Feedback(id string, outcomes []float64) error {
	key, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return ErrUnknownRequest
	}
	at := int(key & (MaxJoinCapacity - 1))
	j.mu.Lock()
	if at >= len(j.ring) || j.ring[at].id != key || j.ring[at].rows == 0 {
		// Forgotten (its place taken), or never issued here: a prediction log
		// may still take it. One already answered is refused.
		expired := at < len(j.ring) && j.ring[at].id != key
		j.mu.Unlock()
		if expired && j.Outcomes != nil && j.Outcomes(id, outcomes, false) {
			return nil
		}
		return ErrUnknownRequest
	}
	a := j.ring[at]
	if int(a.rows) != len(outcomes) {
		j.mu.Unlock()
		return fmt.Errorf("%d outcomes for an answer of %d rows", len(outcomes), a.rows)
	}
	arm, scores := j.arms[a.arm], j.many[key]
	j.forget(key)
	j.ring[at].rows = 0
	j.mu.Unlock()
	if a.rows == 1 {
		scores = []float32{a.score}
	}
	j.Recorder.ObserveOutcomes(int(a.version), arm, scores, outcomes)
	if j.Outcomes != nil {
		j.Outcomes(id, outcomes, true)
	}
	return nil
}

// Holds reports whether the join still holds the answer id names, unanswered.
func (j *Join) Holds(id string) bool {
	key, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return false
	}
	at := int(key & (MaxJoinCapacity - 1))
	j.mu.Lock()
	defer j.mu.Unlock()
	return at < len(j.ring) && j.ring[at].id == key && j.ring[at].rows > 0
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
