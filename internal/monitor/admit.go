package monitor

import (
	"context"
	"errors"
	"fmt"
	"github.com/modelops/modelops/internal/monitor/report"
	"math"
	"regexp"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/registry"
)

// The monitor's budget: what it keeps at most, whatever scorers report. A
// report past a per-report limit is refused whole (the API answers 400 or 413
// naming the limit); the retained state is capped in nodes, series and bytes.
const (
	// DefaultMaxNodes is how many scorer nodes the monitor follows at once
	// unless Monitor.MaxNodes says otherwise; a new node's report past it is
	// refused (503) until a silent one is forgotten.
	DefaultMaxNodes = 1000
	// MaxReportModels bounds the models one report covers.
	MaxReportModels = 50
	// MaxReportModelVersions bounds the (model, version) pairs of one report:
	// production, a canary and a version being replaced make three per model.
	MaxReportModelVersions = 50
	// MaxArmsPerVersion bounds the windows of one version in a report (one
	// per arm: champion, challenger, shadow).
	MaxArmsPerVersion = 4
	// MaxServed bounds what a node says it serves of one model, and
	// MaxReportServed of all models: a node's fleet entry stays small.
	MaxServed       = 8
	MaxReportServed = 64
	// MaxReportLoadErrors bounds the bytes of a report's load errors in all.
	MaxReportLoadErrors = 8 << 10
	// MaxBins bounds a histogram's bins; a card's reference fixes them exactly.
	MaxBins = 64
	// MaxFeatures bounds the feature histograms of a window; the card fixes
	// their number exactly.
	MaxFeatures = 1024
	// MaxFallbackReasons bounds the reasons of a window's fallbacks.
	MaxFallbackReasons = 16
	// MaxText bounds a load error, a fallback reason, an arm or an address.
	MaxText = 1024
	// MaxCount bounds any one count of a window (a trillion): sums of them
	// over every node and second cannot overflow.
	MaxCount = 1e12
	// MaxSeries bounds the (model, version, arm) series kept for charts and
	// decisions; past it the stalest series is dropped.
	MaxSeries = 1000
	// DefaultMaxBytes bounds the counts retained, in bytes (see Usage): past
	// it the oldest points go first.
	DefaultMaxBytes = 256 << 20
	// DefaultGrace is how long a version that left a deployment is still
	// taken in reports: nodes swap a few seconds after a promotion, and report
	// the last second of the version they swapped out.
	DefaultGrace = 2 * time.Minute
)

// Errors of admission.
var (
	// ErrNotDeployed refuses a report for a model or version the control plane
	// does not deploy.
	ErrNotDeployed error = &limitError{kind: registry.ErrForbidden, msg: "not deployed"}
)

var armRE = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

func tooLarge(format string, a ...any) error {
	return &limitError{kind: registry.ErrTooLarge, msg: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) error {
	return &limitError{kind: registry.ErrInvalid, msg: fmt.Sprintf(format, a...)}
}

// limitError reads as its message alone, and is of one registry error kind.
type limitError struct {
	kind error
	msg  string
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return e.kind }

// Admit checks a report before anything of it is kept: its sizes against the
// limits above, its node's name, and that every window is of a version the
// control plane deploys for its model (production, the canary, version 0 for
// the rules' answers, or one that left the deployment less than Grace ago; a
// node that says it cannot load the deployment may go on reporting an earlier
// production version, which it still serves). It changes nothing of the
// monitor's counts.
func (m *Monitor) Admit(ctx context.Context, r report.Report) error {
	if err := registry.CheckNodeName(r.Node); err != nil {
		return err
	}
	if len(r.Address) > MaxText {
		return tooLarge("report address is %d bytes; at most %d", len(r.Address), MaxText)
	}
	if !(r.Interval >= 0 && r.Interval <= 3600) {
		return invalid("report interval_s %v: want 0 to 3600 seconds", r.Interval)
	}
	if len(r.Models) > MaxReportModels {
		return tooLarge("report covers %d models; at most %d", len(r.Models), MaxReportModels)
	}
	pairs, served, loadErrors := 0, 0, 0
	seen := map[string]bool{}
	for _, mr := range r.Models {
		served += len(mr.Served)
		loadErrors += len(mr.LoadError)
		if served > MaxReportServed {
			return tooLarge("report names more than %d served entries", MaxReportServed)
		}
		if loadErrors > MaxReportLoadErrors {
			return tooLarge("report's load errors pass %d bytes in all", MaxReportLoadErrors)
		}
		if err := registry.CheckModelName(mr.Model); err != nil {
			return err
		}
		if seen[mr.Model] {
			return invalid("report covers model %s twice", mr.Model)
		}
		seen[mr.Model] = true
		if len(mr.LoadError) > MaxText {
			return tooLarge("load_error of %s is %d bytes; at most %d", mr.Model, len(mr.LoadError), MaxText)
		}
		if len(mr.Served) > MaxServed {
			return tooLarge("%s: %d served entries; at most %d", mr.Model, len(mr.Served), MaxServed)
		}
		for _, s := range mr.Served {
			if !armRE.MatchString(s.Arm) || len(s.Digest) > 128 || s.Version < 0 {
				return invalid("%s: served entry %q v%d: want an arm of lower-case letters and a digest of at most 128 bytes", mr.Model, truncate(s.Arm, 40), s.Version)
			}
		}
		if len(mr.Windows) == 0 {
			continue
		}
		md, err := m.Registry.Model(ctx, mr.Model)
		if errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("%w: model %s is not in the registry", ErrNotDeployed, mr.Model)
		}
		if err != nil {
			return err
		}
		ok := m.deployedVersions(md, mr.LoadError != "")
		arms := map[int]int{}
		for _, w := range mr.Windows {
			if !ok[w.Version] {
				return fmt.Errorf("%w: %s v%d is not deployed (production v%d%s); a report counts only for what its node is asked to serve",
					ErrNotDeployed, mr.Model, w.Version, md.Production, canaryText(md))
			}
			if arms[w.Version] == 0 {
				pairs++
			}
			arms[w.Version]++
			if arms[w.Version] > MaxArmsPerVersion {
				return tooLarge("%s v%d: more than %d windows (one per arm)", mr.Model, w.Version, MaxArmsPerVersion)
			}
			if err := m.checkWindow(ctx, mr.Model, w); err != nil {
				return err
			}
		}
		if pairs > MaxReportModelVersions {
			return tooLarge("report covers more than %d model versions", MaxReportModelVersions)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, known := m.nodes[r.Node]; !known && len(m.nodes) >= m.maxNodes() {
		m.forgetNodesLocked(m.Now().Add(-m.nodeMemory()))
		if len(m.nodes) >= m.maxNodes() {
			return &limitError{kind: registry.ErrUnavailable, msg: fmt.Sprintf("the monitor follows at most %d nodes (serve --max-nodes); a new one is taken once a silent one is forgotten", m.maxNodes())}
		}
	}
	return nil
}

func canaryText(md *registry.Model) string {
	if md.Candidate == nil {
		return ""
	}
	return fmt.Sprintf(", canary v%d", md.Candidate.Version)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// deployedVersions are the versions of md a report may count for now, and
// notes the deployed ones' time so that they stay so for Grace once replaced.
func (m *Monitor) deployedVersions(md *registry.Model, loadError bool) map[int]bool {
	now := m.Now()
	ok := map[int]bool{0: true}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.deployed[md.Name]
	if seen == nil {
		seen = map[int]time.Time{}
		m.deployed[md.Name] = seen
	}
	if md.Production > 0 {
		seen[md.Production] = now
	}
	if md.Candidate != nil {
		seen[md.Candidate.Version] = now
	}
	// The version production replaced, after a restart of this process too.
	if n := len(md.Previous); n > 0 && now.Sub(md.PromotedAt) < m.Grace {
		ok[md.Previous[n-1]] = true
	}
	for v, at := range seen {
		if now.Sub(at) < m.Grace {
			ok[v] = true
		} else {
			delete(seen, v)
		}
	}
	if loadError {
		for _, v := range md.Previous {
			ok[v] = true
		}
	}
	return ok
}

// checkWindow checks a window's counts and the shape of its histograms: the
// monitor's own bins, and the card's reference for drift.
func (m *Monitor) checkWindow(ctx context.Context, model string, w report.Window) error {
	name := fmt.Sprintf("%s v%d %s", model, w.Version, truncate(w.Arm, 40))
	if !armRE.MatchString(w.Arm) {
		return invalid("%s: arm must be 1 to 32 lower-case letters or underscores", name)
	}
	for _, c := range []struct {
		what string
		n    int64
	}{{"requests", w.Requests}, {"rows", w.Rows}, {"errors", w.Errors}, {"outcomes", w.Outcomes}} {
		if c.n < 0 || c.n > MaxCount {
			return invalid("%s: %s %d: want 0 to %g", name, c.what, c.n, float64(MaxCount))
		}
	}
	if w.Errors > w.Requests {
		return invalid("%s: errors %d of %d requests: errors are among the requests", name, w.Errors, w.Requests)
	}
	for _, f := range []float64{w.OutcomeSE, w.OutcomeAE, w.OutcomeSE2} {
		if !(f >= 0) || math.IsInf(f, 0) {
			return invalid("%s: outcome errors must be finite and not negative", name)
		}
	}
	if len(w.Fallbacks) > MaxFallbackReasons {
		return tooLarge("%s: %d fallback reasons; at most %d", name, len(w.Fallbacks), MaxFallbackReasons)
	}
	for reason, n := range w.Fallbacks {
		if len(reason) > 64 || n < 0 || n > MaxCount {
			return invalid("%s: fallback reason %q: at most 64 bytes, a count from 0 to %g", name, truncate(reason, 40), float64(MaxCount))
		}
	}
	// Refusals are kept in every chart point like fallbacks: unchecked, one
	// report's 28,000 made-up reasons grew the monitor by 3 MB a second.
	if len(w.Refusals) > MaxFallbackReasons {
		return tooLarge("%s: %d refusal reasons; at most %d", name, len(w.Refusals), MaxFallbackReasons)
	}
	for reason, n := range w.Refusals {
		if len(reason) > 64 || n < 0 || n > MaxCount {
			return invalid("%s: refusal reason %q: at most 64 bytes, a count from 0 to %g", name, truncate(reason, 40), float64(MaxCount))
		}
	}
	hist := func(what string, counts []int64, want int) error {
		if len(counts) == 0 {
			return nil
		}
		if len(counts) > MaxBins {
			return tooLarge("%s: %s histogram of %d bins; at most %d", name, what, len(counts), MaxBins)
		}
		if want >= 0 && len(counts) != want {
			return invalid("%s: %s histogram of %d bins; want %d", name, what, len(counts), want)
		}
		for _, c := range counts {
			if c < 0 || c > MaxCount {
				return invalid("%s: %s histogram count %d: want 0 to %g", name, what, c, float64(MaxCount))
			}
		}
		return nil
	}
	if err := hist("latency", w.Latency, len(report.LatencyBucketsMs)+1); err != nil {
		return err
	}
	if err := hist("prediction", w.Prediction, report.PredictionBins); err != nil {
		return err
	}
	if err := hist("shadow_diff", w.ShadowDiff, len(report.ShadowDiffEdges)+1); err != nil {
		return err
	}
	if len(w.Features) > MaxFeatures {
		return tooLarge("%s: %d feature histograms; at most %d", name, len(w.Features), MaxFeatures)
	}
	var card *artifact.Card
	if w.Version > 0 {
		card = m.card(ctx, model, w.Version)
	}
	if card == nil || card.Reference == nil {
		if len(w.Features) > 0 || len(w.RefPrediction) > 0 {
			return invalid("%s: the version's card has no reference: a window counts no features and no ref_prediction", name)
		}
		return nil
	}
	refPred := -1
	if e := card.Reference.Prediction.Edges; len(e) > 0 {
		refPred = len(e) + 1
	}
	if err := hist("ref_prediction", w.RefPrediction, refPred); err != nil {
		return err
	}
	if len(w.Features) == 0 {
		return nil
	}
	if len(w.Features) != len(card.Features) {
		return invalid("%s: %d feature histograms; the card has %d features", name, len(w.Features), len(card.Features))
	}
	for i, f := range card.Features {
		want := -1
		if h, ok := card.Reference.Features[f]; ok && len(h.Edges) > 0 {
			want = len(h.Edges) + 1
		}
		if err := hist("feature "+truncate(f, 40), w.Features[i], want); err != nil {
			return err
		}
	}
	return nil
}
