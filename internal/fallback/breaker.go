package fallback

import (
	"sync"
	"time"
)

// Breaker states.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// Breaker sends traffic to the rules after repeated model errors: Threshold
// consecutive failures open it for Cooldown; then one probe request goes to the
// model, and its outcome closes the breaker or opens it again.
type Breaker struct {
	Threshold int
	Cooldown  time.Duration
	Now       func() time.Time

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
	opened    int64
}

// NewBreaker returns a breaker that opens after threshold consecutive failures.
func NewBreaker(threshold int, cooldown time.Duration) *Breaker {
	return &Breaker{Threshold: threshold, Cooldown: cooldown, Now: time.Now}
}

// Allow reports whether a request may go to the model.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.Threshold {
		return true
	}
	if b.Now().Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true // half-open: this request is the probe
	return true
}

// Record reports the outcome of a request Allow let through.
func (b *Breaker) Record(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.failures, b.probing = 0, false
		return
	}
	b.failures++
	if b.failures >= b.Threshold && (b.probing || b.failures == b.Threshold) {
		b.openUntil = b.Now().Add(b.Cooldown)
		b.opened++
	}
	b.probing = false
}

// Reset closes the breaker (a new session was swapped in).
func (b *Breaker) Reset() {
	b.mu.Lock()
	b.failures, b.probing = 0, false
	b.mu.Unlock()
}

// State is closed, open or half_open.
func (b *Breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.Threshold:
		return BreakerClosed
	case b.Now().Before(b.openUntil) && !b.probing:
		return BreakerOpen
	}
	return BreakerHalfOpen
}

// Opened counts how many times the breaker opened.
func (b *Breaker) Opened() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened
}
