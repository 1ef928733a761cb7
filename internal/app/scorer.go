package app

import (
	"log/slog"

	"github.com/modelops/modelops/internal/scorernode"
)

// The scorer process is assembled in internal/scorernode; these names stay for
// the end-to-end tests and make bench, which build scorers beside control
// planes.

// ScorerConfig configures a scorer node (see scorernode.Config).
type ScorerConfig = scorernode.Config

// Scorer is a running scorer node (see scorernode.Node).
type Scorer = scorernode.Node

// AllModels, as the only --model, serves every model in the registry.
const AllModels = scorernode.AllModels

// DefaultScorerConfig returns the defaults of `scorer`.
func DefaultScorerConfig() ScorerConfig { return scorernode.DefaultConfig() }

// NewScorer returns an unopened scorer node.
func NewScorer(cfg ScorerConfig, log *slog.Logger) *Scorer { return scorernode.New(cfg, log) }
