package registry

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Rollout event kinds: every step of a progressive rollout is one.
const (
	EventRolloutStarted  = "rollout_started"
	EventRolloutStep     = "rollout_step"
	EventRolloutPromoted = "rollout_promoted"
	EventRolloutFailed   = "rollout_failed"
	EventRolloutTimedOut = "rollout_timed_out"
	EventRolloutPaused   = "rollout_paused"
	EventRolloutResumed  = "rollout_resumed"
	EventRolloutAborted  = "rollout_aborted"
	EventRolloutPolicy   = "rollout_policy_set"
)

// Rollout states.
const (
	RolloutRunning  = "running"
	RolloutPaused   = "paused"
	RolloutPromoted = "promoted"
	RolloutFailed   = "failed"    // the analysis failed: canary cleared, version rejected
	RolloutTimedOut = "timed_out" // inconclusive past the timeout: canary cleared
	RolloutAborted  = "aborted"   // by a person
)

// RolloutPolicy is how a model's progressive rollouts are judged; the
// rollback Policy's limits (error and fallback rates, p99, prediction PSI)
// apply to the canary too.
type RolloutPolicy struct {
	// Steps are the canary's traffic shares, in percent, increasing; after
	// the last passes, the version is promoted.
	Steps []float64 `json:"steps"`
	// Interval is the least time at each step before it may pass.
	Interval Duration `json:"interval"`
	// Timeout is the most time a step (or the shadow phase) may stay
	// inconclusive before the rollout is abandoned.
	Timeout Duration `json:"timeout"`
	// MinRequests is how many canary requests a step needs before its health
	// is judged.
	MinRequests int64 `json:"min_requests"`
	// MinScores is how many scores both the canary's and production's
	// prediction histograms need before their drift is judged.
	MinScores int64 `json:"min_scores"`
	// MinOutcomes is how many outcomes each arm needs before the loss test may
	// decide; with fewer (but some), the step waits.
	MinOutcomes int64 `json:"min_outcomes"`
	// RequireOutcomes makes a step wait until the loss test passes, even when
	// no outcomes arrive at all.
	RequireOutcomes bool `json:"require_outcomes"`
	// LossMargin is how much worse than production's the canary's outcome MSE
	// may be, relative: 0.1 allows 10% worse.
	LossMargin float64 `json:"loss_margin"`
	// Alpha bounds the loss test's false-promotion rate (a canary worse by the
	// margin passing) and its false-abort rate (one no worse failing).
	Alpha float64 `json:"alpha"`
	// MaxShadowDiff is the largest median |challenger − champion| a shadow
	// phase accepts.
	MaxShadowDiff float64 `json:"max_shadow_diff"`
}

// DefaultRolloutPolicy applies to models that have not set their own.
func DefaultRolloutPolicy() RolloutPolicy {
	return RolloutPolicy{Steps: []float64{5, 25, 50, 100}, Interval: Duration(2 * time.Minute), Timeout: Duration(30 * time.Minute),
		MinRequests: 100, MinScores: 400, MinOutcomes: 200, LossMargin: 0.1, Alpha: 0.05, MaxShadowDiff: 0.2}
}

// CheckSteps validates a list of traffic shares.
func CheckSteps(steps []float64) error {
	if len(steps) == 0 || len(steps) > 20 {
		return Invalidf("rollout steps: want 1 to 20 shares")
	}
	for i, s := range steps {
		if math.IsNaN(s) || s <= 0 || s > 100 {
			return Invalidf("rollout step %v: want a percentage above 0 and at most 100", s)
		}
		if i > 0 && s <= steps[i-1] {
			return Invalidf("rollout steps %v: want increasing shares", steps)
		}
	}
	return nil
}

// Check returns an error naming the first setting out of range.
func (p RolloutPolicy) Check() error {
	if err := CheckSteps(p.Steps); err != nil {
		return err
	}
	switch {
	case p.Interval <= 0:
		return Invalidf("interval must be positive")
	case p.Timeout < p.Interval:
		return Invalidf("timeout %s: want at least the interval %s", time.Duration(p.Timeout), time.Duration(p.Interval))
	case p.MinRequests < 1:
		return Invalidf("min_requests %d: want at least 1", p.MinRequests)
	case p.MinScores < 1:
		return Invalidf("min_scores %d: want at least 1", p.MinScores)
	case p.MinOutcomes < 2:
		return Invalidf("min_outcomes %d: want at least 2", p.MinOutcomes)
	case !(p.LossMargin >= 0 && p.LossMargin <= 10):
		return Invalidf("loss_margin %v: want 0 to 10", p.LossMargin)
	case !(p.Alpha > 0 && p.Alpha <= 0.5):
		return Invalidf("alpha %v: want above 0 and at most 0.5", p.Alpha)
	case !(p.MaxShadowDiff > 0 && p.MaxShadowDiff <= 1):
		return Invalidf("max_shadow_diff %v: want above 0 and at most 1", p.MaxShadowDiff)
	}
	return nil
}

// EffectiveRolloutPolicy is the model's rollout policy, or the default.
func (m *Model) EffectiveRolloutPolicy() RolloutPolicy {
	if m.RolloutPolicy == nil {
		return DefaultRolloutPolicy()
	}
	p := *m.RolloutPolicy
	if p.MinScores == 0 {
		p.MinScores = DefaultRolloutPolicy().MinScores
	}
	return p
}

// SetRolloutPolicy stores a model's rollout policy.
func (r *Registry) SetRolloutPolicy(ctx context.Context, model string, p RolloutPolicy, expect uint64, actor string) (*Event, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	return r.changeModel(ctx, model, expect, func(_ MetaTx, m *Model) (*Event, error) {
		m.RolloutPolicy = &p
		return &Event{Actor: actorOr(actor), Model: model, Kind: EventRolloutPolicy,
			Reason: fmt.Sprintf("steps %s, interval %s, timeout %s, min requests %d, min outcomes %d, loss margin %g, alpha %g",
				stepsText(p.Steps), time.Duration(p.Interval), time.Duration(p.Timeout), p.MinRequests, p.MinOutcomes, p.LossMargin, p.Alpha)}, nil
	})
}

// Rollout is a model's progressive rollout: the canary's share moves step by
// step while the monitor's analysis passes. It is kept on the model, so it
// survives a restart of the control plane; a finished one stays for status
// until the next starts.
type Rollout struct {
	Version int       `json:"version"`
	Mode    string    `json:"mode"`
	Steps   []float64 `json:"steps"`
	// Step is the index in Steps being judged; -1 during the shadow phase.
	Step     int      `json:"step"`
	Shadow   Duration `json:"shadow,omitempty"`
	Interval Duration `json:"interval"`
	Timeout  Duration `json:"timeout"`
	State    string   `json:"state"`
	// StartedAt is when the rollout began (outcomes count from then);
	// StepSince is when the current step (or phase) began.
	StartedAt time.Time `json:"started_at"`
	StepSince time.Time `json:"step_since"`
	EndedAt   time.Time `json:"ended_at,omitempty"`
	// Analysis is the latest analysis, as the monitor wrote it.
	Analysis string `json:"analysis,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Active says the rollout still runs (or is paused).
func (ro *Rollout) Active() bool {
	return ro != nil && (ro.State == RolloutRunning || ro.State == RolloutPaused)
}

// Share is the canary's traffic at the current step.
func (ro *Rollout) Share() float64 {
	if ro.Step < 0 {
		return 100
	}
	return ro.Steps[ro.Step]
}

// RolloutRequest starts a rollout; zero fields take the model's rollout
// policy.
type RolloutRequest struct {
	Model    string
	Version  int
	Steps    []float64
	Interval time.Duration
	Timeout  time.Duration
	Mode     string
	Shadow   time.Duration
	Actor    string
}

func stepsText(steps []float64) string {
	s := make([]string, len(steps))
	for i, v := range steps {
		s[i] = fmt.Sprintf("%g%%", v)
	}
	return strings.Join(s, ", ")
}

// StartRollout sets the canary at the first step (or shadows it at full
// share when req.Shadow is set) and records the rollout.
func (r *Registry) StartRollout(ctx context.Context, req RolloutRequest) (*Event, error) {
	if req.Mode == "" {
		req.Mode = ModeAB
	}
	if req.Mode != ModeAB {
		return nil, Invalidf("rollout mode %q: want ab (a shadow phase is --shadow)", req.Mode)
	}
	if req.Interval < 0 || req.Timeout < 0 || req.Shadow < 0 {
		return nil, Invalidf("rollout durations must not be negative")
	}
	return r.changeModel(ctx, req.Model, 0, func(tx MetaTx, m *Model) (*Event, error) {
		if _, err := tx.Version(req.Model, req.Version); err != nil {
			return nil, err
		}
		if why, bad := m.Rejected[req.Version]; bad {
			return nil, fmt.Errorf("%s v%d was rejected by the monitor (%s): %w", req.Model, req.Version, why, ErrConflict)
		}
		if m.Production == 0 {
			return nil, fmt.Errorf("%s has no production version to roll out against; promote one first: %w", req.Model, ErrConflict)
		}
		if req.Version == m.Production {
			return nil, fmt.Errorf("%s v%d is production already: %w", req.Model, req.Version, ErrConflict)
		}
		if m.Rollout.Active() {
			return nil, fmt.Errorf("%s has a rollout of v%d %s; abort it first: %w", req.Model, m.Rollout.Version, m.Rollout.State, ErrConflict)
		}
		pol := m.EffectiveRolloutPolicy()
		ro := &Rollout{Version: req.Version, Mode: req.Mode, Steps: pol.Steps, Interval: pol.Interval, Timeout: pol.Timeout,
			Shadow: Duration(req.Shadow), State: RolloutRunning}
		if req.Steps != nil {
			ro.Steps = slices.Clone(req.Steps)
		}
		if err := CheckSteps(ro.Steps); err != nil {
			return nil, err
		}
		if req.Interval > 0 {
			ro.Interval = Duration(req.Interval)
		}
		if req.Timeout > 0 {
			ro.Timeout = Duration(req.Timeout)
		}
		if ro.Timeout < ro.Interval || (ro.Shadow > 0 && ro.Timeout < ro.Shadow) {
			return nil, Invalidf("rollout timeout %s: want at least the interval %s and the shadow phase", time.Duration(ro.Timeout), time.Duration(ro.Interval))
		}
		now := r.Now().UTC()
		ro.StartedAt, ro.StepSince = now, now
		mode, share := ModeAB, ro.Steps[0]
		if ro.Shadow > 0 {
			ro.Step, mode, share = -1, ModeShadow, 100
		}
		m.Candidate = &Canary{Version: req.Version, Traffic: share, Mode: mode, Since: now}
		m.Rollout = ro
		reason := fmt.Sprintf("steps %s, interval %s, timeout %s", stepsText(ro.Steps), time.Duration(ro.Interval), time.Duration(ro.Timeout))
		if ro.Shadow > 0 {
			reason = fmt.Sprintf("shadow for %s, then %s", time.Duration(ro.Shadow), reason)
		}
		return &Event{Actor: actorOr(req.Actor), Model: req.Model, Kind: EventRolloutStarted, To: req.Version, Reason: reason}, nil
	})
}

// changeRollout edits the model's active rollout of version (any, when 0).
func (r *Registry) changeRollout(ctx context.Context, model string, version int, change func(m *Model, ro *Rollout, now time.Time) (*Event, error)) (*Event, error) {
	return r.changeModel(ctx, model, 0, func(_ MetaTx, m *Model) (*Event, error) {
		ro := m.Rollout
		if !ro.Active() || (version != 0 && ro.Version != version) {
			return nil, fmt.Errorf("%s has no rollout in progress%s: %w", model, versionText(version), ErrConflict)
		}
		c := *ro
		ev, err := change(m, &c, r.Now().UTC())
		if err != nil {
			return nil, err
		}
		m.Rollout = &c
		return ev, nil
	})
}

func versionText(v int) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf(" of v%d", v)
}

// AdvanceRollout is the monitor's pass: the rollout moves to its next step,
// or, after the last, the version is promoted. step is the step judged (-1:
// the shadow phase), so a pass decided twice moves once.
func (r *Registry) AdvanceRollout(ctx context.Context, model string, version, step int, analysis string) (*Event, error) {
	return r.changeRollout(ctx, model, version, func(m *Model, ro *Rollout, now time.Time) (*Event, error) {
		if ro.State != RolloutRunning || ro.Step != step {
			return nil, fmt.Errorf("%s's rollout moved on: %w", model, ErrConflict)
		}
		if m.Candidate == nil || m.Candidate.Version != version {
			return nil, fmt.Errorf("%s v%d is no longer the canary: %w", model, version, ErrConflict)
		}
		ro.Analysis = analysis
		if ro.Step == len(ro.Steps)-1 {
			ro.State, ro.EndedAt, ro.Reason = RolloutPromoted, now, "every step passed"
			m.PromotedAt = now
			from := m.Production
			if m.Production > 0 {
				m.Previous = append(m.Previous, m.Production)
			}
			m.Production, m.Candidate = version, nil
			return &Event{Actor: "monitor", Model: model, Kind: EventRolloutPromoted, From: from, To: version,
				Reason: fmt.Sprintf("step %g%% passed: %s", ro.Steps[ro.Step], analysis)}, nil
		}
		passed := "shadow phase"
		if ro.Step >= 0 {
			passed = fmt.Sprintf("step %g%%", ro.Steps[ro.Step])
		}
		ro.Step++
		ro.StepSince = now
		m.Candidate = &Canary{Version: version, Traffic: ro.Steps[ro.Step], Mode: ModeAB, Since: m.Candidate.Since}
		return &Event{Actor: "monitor", Model: model, Kind: EventRolloutStep, To: version,
			Reason: fmt.Sprintf("%s passed, now %g%%: %s", passed, ro.Steps[ro.Step], analysis)}, nil
	})
}

// FailRollout is the monitor's fail (the canary is cleared and the version
// rejected) or timeout (the canary is cleared).
func (r *Registry) FailRollout(ctx context.Context, model string, version int, timedOut bool, analysis string) (*Event, error) {
	return r.changeRollout(ctx, model, version, func(m *Model, ro *Rollout, now time.Time) (*Event, error) {
		ro.Analysis, ro.EndedAt = analysis, now
		if m.Candidate != nil && m.Candidate.Version == version {
			m.Candidate = nil
		}
		at := "the shadow phase"
		if ro.Step >= 0 {
			at = fmt.Sprintf("step %g%%", ro.Steps[ro.Step])
		}
		if timedOut {
			ro.State, ro.Reason = RolloutTimedOut, fmt.Sprintf("inconclusive at %s past the timeout %s", at, time.Duration(ro.Timeout))
			return &Event{Actor: "monitor", Model: model, Kind: EventRolloutTimedOut, From: version, Reason: ro.Reason + ": " + analysis}, nil
		}
		ro.State, ro.Reason = RolloutFailed, "failed at "+at
		if m.Rejected == nil {
			m.Rejected = map[int]string{}
		}
		m.Rejected[version] = "rollout " + ro.Reason + ": " + analysis
		return &Event{Actor: "monitor", Model: model, Kind: EventRolloutFailed, From: version, Reason: ro.Reason + ": " + analysis}, nil
	})
}

// PauseRollout holds a rollout at its step; the canary keeps its share.
func (r *Registry) PauseRollout(ctx context.Context, model, actor string) (*Event, error) {
	return r.changeRollout(ctx, model, 0, func(m *Model, ro *Rollout, now time.Time) (*Event, error) {
		if ro.State == RolloutPaused {
			return unchanged(model, EventRolloutPaused, ro.Version, ro.Version), nil
		}
		ro.State = RolloutPaused
		return &Event{Actor: actorOr(actor), Model: model, Kind: EventRolloutPaused, To: ro.Version, Reason: fmt.Sprintf("at %g%%", ro.Share())}, nil
	})
}

// ResumeRollout restarts a paused rollout's current step.
func (r *Registry) ResumeRollout(ctx context.Context, model, actor string) (*Event, error) {
	return r.changeRollout(ctx, model, 0, func(m *Model, ro *Rollout, now time.Time) (*Event, error) {
		if ro.State == RolloutRunning {
			return unchanged(model, EventRolloutResumed, ro.Version, ro.Version), nil
		}
		if m.Candidate == nil || m.Candidate.Version != ro.Version {
			return nil, fmt.Errorf("%s v%d is no longer the canary; abort the rollout: %w", model, ro.Version, ErrConflict)
		}
		ro.State, ro.StepSince = RolloutRunning, now
		return &Event{Actor: actorOr(actor), Model: model, Kind: EventRolloutResumed, To: ro.Version, Reason: fmt.Sprintf("at %g%%, the step starts afresh", ro.Share())}, nil
	})
}

// AbortRollout ends a rollout and clears its canary; the version is not
// rejected.
func (r *Registry) AbortRollout(ctx context.Context, model, actor, reason string) (*Event, error) {
	return r.changeRollout(ctx, model, 0, func(m *Model, ro *Rollout, now time.Time) (*Event, error) {
		ro.State, ro.EndedAt, ro.Reason = RolloutAborted, now, withWhy("aborted", reason)
		if m.Candidate != nil && m.Candidate.Version == ro.Version {
			m.Candidate = nil
		}
		return &Event{Actor: actorOr(actor), Model: model, Kind: EventRolloutAborted, From: ro.Version, Reason: ro.Reason}, nil
	})
}
