package registry

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// More event kinds: decisions of the monitor and policy changes.
const (
	EventAutoRollback = "auto_rollback"
	EventDriftAlert   = "drift_alert"
	EventPolicySet    = "policy_set"
	EventRejected     = "rejected"
)

// Policy is a model's rollback policy: what a freshly promoted version (or a
// canary) must keep to within, measured by the monitor over its window.
type Policy struct {
	MaxErrorRate    float64  `json:"max_error_rate"`
	MaxFallbackRate float64  `json:"max_fallback_rate"`
	MaxP99Ms        float64  `json:"max_p99_ms"`
	MaxPredPSI      float64  `json:"max_prediction_psi"`
	MinSamples      int64    `json:"min_samples"`
	BakeTime        Duration `json:"bake_time"`
	FailureLimit    int      `json:"failure_limit"`
	// CorroboratingNodes is how many distinct nodes must each see a breach of
	// the error, fallback or latency limit on their own traffic before a
	// version served by two or more nodes is rolled back: one node (or one
	// stolen scorer token) alone cannot roll back production. A version served
	// by fewer nodes needs them all.
	CorroboratingNodes int `json:"corroborating_nodes"`
}

// DefaultCorroboratingNodes is the policy's CorroboratingNodes by default.
const DefaultCorroboratingNodes = 2

// Duration is a time.Duration that reads and writes as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads "30s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	// A string is a duration, whole ("10 minutes" or "10x" is not 10s); a bare
	// number is seconds.
	var v time.Duration
	var err error
	if s, quoted := strings.CutPrefix(string(b), `"`); quoted {
		v, err = time.ParseDuration(strings.TrimSuffix(s, `"`))
	} else {
		var secs float64
		if secs, err = strconv.ParseFloat(s, 64); err == nil {
			v = time.Duration(secs * float64(time.Second))
		}
	}
	if err != nil {
		return fmt.Errorf("duration %s: want a string such as \"30s\"", b)
	}
	*d = Duration(v)
	return nil
}

// DefaultPolicy applies to models that have not set their own.
func DefaultPolicy() Policy {
	return Policy{MaxErrorRate: 0.01, MaxFallbackRate: 0.05, MaxP99Ms: 50, MaxPredPSI: 0.25, MinSamples: 100,
		BakeTime: Duration(10 * time.Minute), FailureLimit: 3, CorroboratingNodes: DefaultCorroboratingNodes}
}

// Check returns an error naming the first setting out of range.
func (p Policy) Check() error {
	switch {
	case !(p.MaxErrorRate >= 0 && p.MaxErrorRate <= 1):
		return Invalidf("max_error_rate %v: want 0 to 1", p.MaxErrorRate)
	case !(p.MaxFallbackRate >= 0 && p.MaxFallbackRate <= 1):
		return Invalidf("max_fallback_rate %v: want 0 to 1", p.MaxFallbackRate)
	case !(p.MaxP99Ms > 0) || math.IsInf(p.MaxP99Ms, 0):
		return Invalidf("max_p99_ms %v: want a positive number", p.MaxP99Ms)
	case !(p.MaxPredPSI > 0) || math.IsInf(p.MaxPredPSI, 0):
		return Invalidf("max_prediction_psi %v: want a positive number", p.MaxPredPSI)
	case p.MinSamples < 1:
		return Invalidf("min_samples %d: want at least 1", p.MinSamples)
	case p.BakeTime < 0:
		return Invalidf("bake_time must not be negative")
	case p.FailureLimit < 1:
		return Invalidf("failure_limit %d: want at least 1", p.FailureLimit)
	case p.CorroboratingNodes < 1 || p.CorroboratingNodes > 1000:
		return Invalidf("corroborating_nodes %d: want 1 to 1000", p.CorroboratingNodes)
	}
	return nil
}

// EffectivePolicy is the model's policy, or the default.
func (m *Model) EffectivePolicy() Policy {
	if m.Policy == nil {
		return DefaultPolicy()
	}
	p := *m.Policy
	if p.CorroboratingNodes == 0 { // stored before the setting existed
		p.CorroboratingNodes = DefaultCorroboratingNodes
	}
	return p
}

// SetPolicy stores a model's rollback policy.
func (r *Registry) SetPolicy(ctx context.Context, model string, p Policy, expect uint64, actor string) (*Event, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	return r.changeModel(ctx, model, expect, func(_ MetaTx, m *Model) (*Event, error) {
		m.Policy = &p
		return &Event{Actor: actorOr(actor), Model: model, Kind: EventPolicySet,
			Reason: fmt.Sprintf("max error rate %g, fallback rate %g, p99 %g ms, prediction PSI %g; min samples %d, bake %s, failure limit %d, corroborating nodes %d",
				p.MaxErrorRate, p.MaxFallbackRate, p.MaxP99Ms, p.MaxPredPSI, p.MinSamples, time.Duration(p.BakeTime), p.FailureLimit, p.CorroboratingNodes)}, nil
	})
}

// Decision is an automatic change the monitor asks for.
type Decision struct {
	Model string
	// Version is the version judged: production (rolled back) or candidate (cleared).
	Version int
	// Candidate says the version is the canary, not production.
	Candidate bool
	Reason    string
}

// AutoRollback carries out a monitor decision in one transaction: production goes
// back to the newest earlier version that is not rejected (or the canary is
// cleared), and the judged version is marked rejected, so it is never promoted
// again without force. It refuses (ErrConflict) when the model moved on meanwhile.
func (r *Registry) AutoRollback(ctx context.Context, d Decision) (*Event, error) {
	return r.changeModel(ctx, d.Model, 0, func(tx MetaTx, m *Model) (*Event, error) {
		if m.Rejected == nil {
			m.Rejected = map[int]string{}
		}
		if d.Candidate {
			if m.Candidate == nil || m.Candidate.Version != d.Version {
				return nil, fmt.Errorf("%s v%d is no longer the canary: %w", d.Model, d.Version, ErrConflict)
			}
			m.Candidate = nil
			m.Rejected[d.Version] = d.Reason
			return &Event{Actor: "monitor", Model: d.Model, Kind: EventCanaryCleared, From: d.Version, Reason: d.Reason}, nil
		}
		if m.Production != d.Version {
			return nil, fmt.Errorf("%s v%d is no longer production: %w", d.Model, d.Version, ErrConflict)
		}
		to := 0
		for i := len(m.Previous) - 1; i >= 0; i-- {
			v := m.Previous[i]
			if _, bad := m.Rejected[v]; v != m.Production && !bad {
				to = v
				m.Previous = m.Previous[:i]
				break
			}
		}
		if to == 0 {
			return nil, fmt.Errorf("%s v%d has no earlier good version to roll back to: %w", d.Model, d.Version, ErrConflict)
		}
		m.Rejected[d.Version] = d.Reason
		m.Production = to
		m.PromotedAt = r.Now().UTC()
		return &Event{Actor: "monitor", Model: d.Model, Kind: EventAutoRollback, From: d.Version, To: to, Reason: d.Reason}, nil
	})
}

// Alert records a monitor alert (such as input drift) as an event.
func (r *Registry) Alert(ctx context.Context, model string, version int, kind, reason string) (*Event, error) {
	return r.changeModel(ctx, model, 0, func(_ MetaTx, m *Model) (*Event, error) {
		return &Event{Actor: "monitor", Model: model, Kind: kind, To: version, Reason: reason}, nil
	})
}
