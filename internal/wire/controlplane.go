// Package wire holds the request and response bodies that servers and the
// client share: the control plane's /api/v1 bodies, the scorer's /v1 and Open
// Inference Protocol v2 bodies, and the error body every server answers with.
// No framework: plain types with their JSON tags.
package wire

import "github.com/modelops/modelops/internal/registry"

// Error is the body of every error response: {"error":{"code","message"}}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody wraps Error as it appears on the wire.
type ErrorBody struct {
	Error Error `json:"error"`
}

// ModelView is a model with its versions, as GET /models/{m} returns it.
type ModelView struct {
	registry.Model
	Versions []registry.Version `json:"versions"`
}

// PushResponse is the answer to a push.
type PushResponse struct {
	Version  registry.Version `json:"version"`
	Created  bool             `json:"created"`
	Revision uint64           `json:"revision,omitempty"`
}

// AliasBody is the body of promote and rollback.
type AliasBody struct {
	Version        int    `json:"version"`
	ExpectRevision uint64 `json:"expect_revision,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Force promotes a version the monitor rejected.
	Force bool `json:"force,omitempty"`
}

// GCBody asks for garbage collection of unreferenced blobs.
type GCBody struct {
	// Grace is a duration such as "24h": younger blobs are kept (default 24h).
	Grace string `json:"grace,omitempty"`
	// Apply deletes; without it the answer only lists.
	Apply bool `json:"apply,omitempty"`
}

// CanaryBody sets the candidate alias.
type CanaryBody struct {
	Version        int     `json:"version"`
	Traffic        float64 `json:"traffic"`
	Mode           string  `json:"mode,omitempty"`
	ExpectRevision uint64  `json:"expect_revision,omitempty"`
	Reason         string  `json:"reason,omitempty"`
}

// BlendBody sets a model's blend weight.
type BlendBody struct {
	Weight         *float64 `json:"weight"`
	ExpectRevision uint64   `json:"expect_revision,omitempty"`
	Reason         string   `json:"reason,omitempty"`
}

// PolicyBody changes some settings of a model's policy; absent ones keep their
// current value.
type PolicyBody struct {
	MaxErrorRate    *float64           `json:"max_error_rate,omitempty"`
	MaxFallbackRate *float64           `json:"max_fallback_rate,omitempty"`
	MaxP99Ms        *float64           `json:"max_p99_ms,omitempty"`
	MaxPredPSI      *float64           `json:"max_prediction_psi,omitempty"`
	MinSamples      *int64             `json:"min_samples,omitempty"`
	BakeTime        *registry.Duration `json:"bake_time,omitempty"`
	FailureLimit    *int               `json:"failure_limit,omitempty"`
	// CorroboratingNodes: how many nodes must each see a breach before a
	// version served by several is rolled back.
	CorroboratingNodes *int   `json:"corroborating_nodes,omitempty"`
	ExpectRevision     uint64 `json:"expect_revision,omitempty"`
}

// TokenBody creates a token.
type TokenBody struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Node binds a scorer token to the node it reports for (else its first
	// report binds it).
	Node string `json:"node,omitempty"`
}

// TokenCreated answers a token creation; the secret is shown this once.
type TokenCreated struct {
	registry.Token
	Secret string `json:"secret"`
}

// LeaderInfo says which control-plane replica runs the monitor, when several
// share an etcd registry (GET /api/v1/leader; a single control plane has no
// such route).
type LeaderInfo struct {
	Monitor string `json:"monitor"`
	Self    string `json:"self"`
	Leading bool   `json:"leading"`
}

// RolloutBody starts a progressive rollout; absent settings take the model's
// rollout policy.
type RolloutBody struct {
	Version  int                `json:"version"`
	Steps    []float64          `json:"steps,omitempty"`
	Interval *registry.Duration `json:"interval,omitempty"`
	Timeout  *registry.Duration `json:"timeout,omitempty"`
	Mode     string             `json:"mode,omitempty"`
	// Shadow, when set, starts with a shadow phase that long.
	Shadow *registry.Duration `json:"shadow,omitempty"`
}

// RolloutActionBody carries why a person paused, resumed or aborted.
type RolloutActionBody struct {
	Reason string `json:"reason,omitempty"`
}

// RolloutPolicyBody changes some settings of a model's rollout policy; absent
// ones keep their current value.
type RolloutPolicyBody struct {
	Steps           []float64          `json:"steps,omitempty"`
	Interval        *registry.Duration `json:"interval,omitempty"`
	Timeout         *registry.Duration `json:"timeout,omitempty"`
	MinRequests     *int64             `json:"min_requests,omitempty"`
	MinScores       *int64             `json:"min_scores,omitempty"`
	MinOutcomes     *int64             `json:"min_outcomes,omitempty"`
	RequireOutcomes *bool              `json:"require_outcomes,omitempty"`
	LossMargin      *float64           `json:"loss_margin,omitempty"`
	Alpha           *float64           `json:"alpha,omitempty"`
	MaxShadowDiff   *float64           `json:"max_shadow_diff,omitempty"`
	ExpectRevision  uint64             `json:"expect_revision,omitempty"`
}
