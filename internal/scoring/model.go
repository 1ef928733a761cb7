package scoring

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
)

// Routing is how a model's traffic is split and blended right now.
type Routing struct {
	// Traffic is the canary's percentage (0–100).
	Traffic float64
	// Mode is "ab" or "shadow" ("" when there is no canary).
	Mode string
	// Blend is w in score = w·model + (1−w)·rules.
	Blend float64
}

// Breaker settings of every version: this many consecutive model errors open
// it for BreakerCooldown.
const (
	BreakerThreshold = 5
	BreakerCooldown  = 5 * time.Second
)

// Model is one model a service answers for: its deployment slots, its rules
// (nil when it has none), the routing in force and a breaker per version
// loaded. A version swapped in starts with a closed breaker of its own, so a
// failing canary never sends production traffic to the rules and a version
// brought back by a rollback is not judged on its predecessor's failures.
type Model struct {
	Name       string
	Production *loader.Slot
	Canary     *loader.Slot
	Rules      fallback.Rules
	// Recorder, when set, counts this model's answers for the monitor (else
	// the service's). Join, likewise, remembers answers for feedback.
	Recorder *report.Recorder
	Join     *report.Join
	// Status, when set, reports how the node keeps the slots up to date.
	Status func() any
	// FailedLoads, when set, counts versions that failed to load.
	FailedLoads func() int
	// LoadError, when set, says why the node does not serve the model's
	// deployment ("" while it does).
	LoadError func() string
	// NewBreaker makes the breaker of each version loaded (default
	// BreakerThreshold and BreakerCooldown).
	NewBreaker func() *fallback.Breaker

	routing atomic.Pointer[Routing]
	// breakers maps each *loader.Loaded served to its breaker.
	breakers sync.Map
	pruneMu  sync.Mutex
}

// NewModel returns a model with empty slots and no canary.
func NewModel(name string, rules fallback.Rules) *Model {
	m := &Model{Name: name, Production: &loader.Slot{}, Canary: &loader.Slot{}, Rules: rules}
	m.SetRouting(Routing{Blend: 1})
	return m
}

// SetRouting changes the traffic split and blend.
func (m *Model) SetRouting(r Routing) { m.routing.Store(&r) }

// Routing returns the traffic split and blend in force.
func (m *Model) Routing() Routing { return *m.routing.Load() }

func (m *Model) failedLoads() int {
	if m.FailedLoads == nil {
		return 0
	}
	return m.FailedLoads()
}

// Width is the row width requests must carry: the rules' if the model has
// rules, else the production session's (the canary's when production has
// none); 0 when neither is there.
func (m *Model) Width() int {
	if m.Rules != nil {
		return m.Rules.Features()
	}
	for _, slot := range []*loader.Slot{m.Production, m.Canary} {
		if l := slot.Acquire(); l != nil {
			w := l.Signature().Features()
			l.Release()
			return w
		}
	}
	return 0
}

// signature is the signature of version v (production's when 0, else the
// canary's), if one is loaded.
func (m *Model) signature(v int) (artifact.Signature, bool) {
	if v != 0 {
		l, _ := m.Pin(v)
		if l == nil {
			return artifact.Signature{}, false
		}
		defer l.Release()
		return l.Signature(), true
	}
	for _, slot := range []*loader.Slot{m.Production, m.Canary} {
		if l := slot.Acquire(); l != nil {
			defer l.Release()
			return l.Signature(), true
		}
	}
	return artifact.Signature{}, false
}

// Signature is the signature of the version production serves (the canary's
// when production has none); false when none is loaded.
func (m *Model) Signature() (artifact.Signature, bool) { return m.signature(0) }

// Ready reports whether the model can answer: from a session or its rules.
func (m *Model) Ready() bool {
	if m.Rules != nil {
		return true
	}
	_, _, p := m.Production.Current()
	_, _, c := m.Canary.Current()
	return p || c
}

// Breaker returns the breaker of the version l serves, made on first use.
func (m *Model) Breaker(l *loader.Loaded) *fallback.Breaker {
	if b, ok := m.breakers.Load(l); ok {
		return b.(*fallback.Breaker)
	}
	var b *fallback.Breaker
	if m.NewBreaker != nil {
		b = m.NewBreaker()
	} else {
		b = fallback.NewBreaker(BreakerThreshold, BreakerCooldown)
	}
	v, loaded := m.breakers.LoadOrStore(l, b)
	if !loaded {
		m.prune()
	}
	return v.(*fallback.Breaker)
}

// prune forgets the breakers of sessions since destroyed.
func (m *Model) prune() {
	if !m.pruneMu.TryLock() {
		return
	}
	defer m.pruneMu.Unlock()
	m.breakers.Range(func(k, _ any) bool {
		select {
		case <-k.(*loader.Loaded).Closed():
			m.breakers.Delete(k)
		default:
		}
		return true
	})
}

// BreakerState is the state of the breaker of the version slot serves
// ("closed" when nothing is loaded or it never ran).
func (m *Model) BreakerState(slot *loader.Slot) string {
	l := slot.Acquire()
	if l == nil {
		return fallback.BreakerClosed
	}
	defer l.Release()
	if b, ok := m.breakers.Load(l); ok {
		return b.(*fallback.Breaker).State()
	}
	return fallback.BreakerClosed
}

// Pin finds version v in the production slot or the canary's and returns its
// session, acquired (the caller releases it), with the arm that serves it;
// nil when neither holds it.
func (m *Model) Pin(v int) (*loader.Loaded, string) {
	for _, arm := range []struct {
		slot *loader.Slot
		name string
	}{{m.Production, ArmProduction}, {m.Canary, ArmCanary}} {
		if l := arm.slot.Acquire(); l != nil {
			if l.Version == v {
				return l, arm.name
			}
			l.Release()
		}
	}
	return nil, ""
}

// Versions are the versions the slots hold, as decimal strings: production's,
// then the canary's.
func (m *Model) Versions() []string {
	var vs []string
	for _, slot := range []*loader.Slot{m.Production, m.Canary} {
		if v, _, ok := slot.Current(); ok {
			vs = append(vs, strconv.Itoa(v))
		}
	}
	return vs
}

// Close retires both slots' sessions.
func (m *Model) Close() {
	m.Production.Close()
	m.Canary.Close()
}
