package scoring

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor/report"
	"github.com/modelops/modelops/internal/predlog/logship"
)

// Service answers score requests for a set of models. Set its fields, add
// models, then call Score from any number of goroutines; models may be added
// and removed while it serves.
type Service struct {
	Logger *slog.Logger
	// Default answers requests that name no model ("" is the first added).
	Default string
	// Budget is a request's latency budget unless it names its own (default 50 ms).
	Budget time.Duration
	// MaxRows bounds the rows of one request (default 4096).
	MaxRows int
	// MaxInFlight requests score at once; up to MaxQueue more wait for a turn,
	// and beyond that the answer is ErrQueueFull.
	MaxInFlight, MaxQueue int
	// Batcher, when set, gathers concurrent requests of at most a quarter of
	// its MaxRows rows into shared session runs (micro-batching).
	Batcher *loader.Batcher
	// Recorder and Join serve models that have none of their own.
	Recorder *report.Recorder
	Join     *report.Join
	// Log, when set, samples answered rows into the prediction log.
	Log *logship.Log

	models    atomic.Pointer[map[string]*Model]
	mu        sync.Mutex // serialises Add and Remove
	metrics   *Metrics
	sem       chan struct{}
	waiting   atomic.Int64
	shadowSem chan struct{}
	shadows   sync.WaitGroup
	once      sync.Once
}

// New returns a service for models; the first is the default.
func New(log *slog.Logger, models ...*Model) *Service {
	s := &Service{Logger: log, MaxRows: 4096, Budget: 50 * time.Millisecond, MaxInFlight: 256, MaxQueue: 4096}
	empty := map[string]*Model{}
	s.models.Store(&empty)
	for _, m := range models {
		s.Add(m)
	}
	return s
}

func (s *Service) init() {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		if s.models.Load() == nil {
			empty := map[string]*Model{}
			s.models.Store(&empty)
		}
		s.metrics = newMetrics(s)
		s.sem = make(chan struct{}, max(1, s.MaxInFlight))
		s.shadowSem = make(chan struct{}, 4)
	})
}

// Metrics returns the service's Prometheus series.
func (s *Service) Metrics() *Metrics {
	s.init()
	return s.metrics
}

// Add serves m (replacing a model of the same name, which it returns).
func (s *Service) Add(m *Model) *Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur map[string]*Model
	if p := s.models.Load(); p != nil {
		cur = *p
	}
	next := make(map[string]*Model, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	old := next[m.Name]
	next[m.Name] = m
	if s.Default == "" {
		s.Default = m.Name
	}
	s.models.Store(&next)
	return old
}

// Remove stops serving the named model and returns it (nil if it was not
// served); the caller closes it.
func (s *Service) Remove(name string) *Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.models.Load()
	old, ok := cur[name]
	if !ok {
		return nil
	}
	next := make(map[string]*Model, len(cur))
	for k, v := range cur {
		if k != name {
			next[k] = v
		}
	}
	s.models.Store(&next)
	return old
}

// Model returns the named model ("" for the default).
func (s *Service) Model(name string) (*Model, bool) {
	if name == "" {
		name = s.Default
	}
	p := s.models.Load()
	if p == nil {
		return nil, false
	}
	m, ok := (*p)[name]
	return m, ok
}

// Models returns every model served, by name.
func (s *Service) Models() []*Model {
	p := s.models.Load()
	if p == nil {
		return nil
	}
	out := make([]*Model, 0, len(*p))
	for _, m := range *p {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Model) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Ready reports whether every model can answer, from a session or its rules,
// and if not names the first that cannot. A swap never makes it false: the
// old session serves until the new one is in.
func (s *Service) Ready() (bool, string) {
	for _, m := range s.Models() {
		if !m.Ready() {
			return false, m.Name
		}
	}
	return true, ""
}

// Expect announces a request to the batcher as soon as its body is read, so
// that a batch about to run waits for it (nil without a batcher).
func (s *Service) Expect() *loader.Arrival {
	if s.Batcher == nil {
		return nil
	}
	return s.Batcher.Expect()
}

// Refused counts a request a transport refused before (or instead of) Score:
// by model ("" when it named none this scorer serves), HTTP-like status and
// reason, in the metrics and, for a model served, in its reports.
func (s *Service) Refused(model string, status int, reason string) {
	s.init()
	m, ok := s.Model(model)
	if !ok {
		model = ""
	}
	if !ok {
		s.metrics.refused("", "", "", status, reason)
		return
	}
	s.refuse(m, 0, "", status, reason)
}

func (s *Service) recorder(m *Model) *report.Recorder {
	if m.Recorder != nil {
		return m.Recorder
	}
	return s.Recorder
}

func (s *Service) join(m *Model) *report.Join {
	if m.Join != nil {
		return m.Join
	}
	return s.Join
}

// Score answers req: from the arm the routing picks (or the version it pins),
// within its budget, behind that version's breaker; from the model's rules
// when no session can answer, it fails, runs out of budget or breaks its
// output contract. Every answer and every refusal is counted.
func (s *Service) Score(ctx context.Context, req Request) (Response, error) {
	s.init()
	defer req.Arrival.Abandon()
	m, ok := s.Model(req.Model)
	if !ok {
		err := &Error{Kind: ErrUnknownModel, Msg: fmt.Sprintf("unknown model %q", truncate(req.Model, 80))}
		s.Refused("", 404, err.Reason())
		return Response{}, err
	}
	var pin *loader.Loaded
	pinArm := ""
	if req.Version != 0 {
		if pin, pinArm = m.Pin(req.Version); pin == nil {
			err := &Error{Kind: ErrUnknownVersion, Msg: NoVersion(m, fmt.Sprint(req.Version))}
			s.refuse(m, 0, "", 404, err.Reason())
			return Response{}, err
		}
		defer pin.Release()
	}
	budget := req.Budget
	if budget == 0 {
		budget = s.Budget
	}
	if err := s.check(m, &req, budget); err != nil {
		s.refuse(m, 0, "", Status(err), err.Reason())
		return Response{}, err
	}
	start := time.Now()
	if err := s.admit(ctx, budget, req.Arrival); err != nil {
		var e *Error
		if errors.As(err, &e) {
			status := 503
			if e.Kind == ErrQueueFull {
				status = 429
			}
			s.refuse(m, 0, "", status, e.Reason())
		}
		return Response{}, err
	}
	out := s.score(m, &req, budget, pin, pinArm)
	<-s.sem
	if out.Source == "" {
		// Nothing answered: the model failed and has no rules, or the client
		// refused the rules' answer. The failure counts against the version
		// that caused it, as an error when it was the model's.
		msg := fmt.Sprintf("model %s cannot answer (%s) and has no fallback rules", m.Name, out.Reason)
		if m.Rules != nil {
			msg = fmt.Sprintf("model %s cannot answer (%s) and the request refuses a fallback answer", m.Name, out.Reason)
		}
		err := &Error{Kind: ErrUnavailable, Msg: msg, RetryAfter: 1}
		s.observe(m, out, &req, start, true)
		s.metrics.refused(m.Name, versionLabel(out.Attempted), out.Arm, 503, err.Reason()+"/"+out.Reason)
		return Response{}, err
	}
	s.observe(m, out, &req, start, false)
	if j := s.join(m); j != nil && out.Source == SourceModel {
		out.RequestID = j.Remember(out.Version, out.Arm, out.Scores)
	}
	if s.Log != nil && out.Outputs == 1 && req.Flat != nil {
		version := out.Version
		if version == 0 {
			version = out.Attempted
		}
		s.Log.Record(&logship.Answer{Model: m.Name, Version: version, Arm: out.Arm, Source: out.Source, Key: req.Key,
			RequestID: out.RequestID, Flat: req.Flat, Rows: req.Rows, Scores: out.Scores})
	}
	return out, nil
}

// refuse counts a refusal of a request for m. One refused before it was
// routed counts against the production version being served: that is what
// the client asked of the model.
func (s *Service) refuse(m *Model, version int, arm string, status int, reason string) {
	if arm == "" {
		version, _, _ = m.Production.Current()
		arm = ArmProduction
	}
	s.metrics.refused(m.Name, versionLabel(version), arm, status, reason)
	if rec := s.recorder(m); rec != nil {
		rec.Refuse(version, arm, reason)
	}
}

// check validates req's shape against m.
func (s *Service) check(m *Model, req *Request, budget time.Duration) *Error {
	switch {
	case budget < 0 || budget > MaxBudget:
		return Invalid("latency budget %s: want above 0 and at most %s", budget, MaxBudget)
	case req.Rows < 1:
		return Invalid("no rows to score")
	case req.Rows > s.MaxRows:
		return Invalid("%d rows, at most %d per request", req.Rows, s.MaxRows)
	}
	if req.Inputs != nil {
		sig, ok := m.signature(req.Version)
		if !ok {
			return &Error{Kind: ErrUnavailable, Msg: fmt.Sprintf("model %s has no verified version loaded yet", m.Name), RetryAfter: 1}
		}
		ordered, err := orderInputs(sig, req.Inputs, req.Rows)
		if err != nil {
			return err
		}
		req.Inputs = ordered
		return nil
	}
	width := m.Width()
	if req.Version != 0 {
		if l, _ := m.Pin(req.Version); l != nil {
			width = l.Signature().Features()
			l.Release()
		}
	}
	if width == 0 {
		return &Error{Kind: ErrUnavailable, Msg: fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name), RetryAfter: 1}
	}
	if len(req.Flat) != req.Rows*width {
		return Invalid("%d values for %d rows; model %s takes %d per row", len(req.Flat), req.Rows, m.Name, width)
	}
	return nil
}

// Admit takes a turn to score as a request does, waiting at most wait in the
// bounded queue; release gives it back. (Score takes its own; this is for
// work that must hold scoring back, and for tests.)
func (s *Service) Admit(ctx context.Context, wait time.Duration) (release func(), err error) {
	s.init()
	if err := s.admit(ctx, wait, nil); err != nil {
		return nil, err
	}
	return func() { <-s.sem }, nil
}

// Waiting is how many requests wait for a turn.
func (s *Service) Waiting() int64 { return s.waiting.Load() }

// WaitShadows waits for the shadow runs in flight to be recorded.
func (s *Service) WaitShadows() { s.shadows.Wait() }

// admit takes a turn to score, which the caller gives back (<-s.sem): at once
// if one is free, else after waiting in a bounded queue. A request that has to
// wait withdraws its announcement to the batcher first, so no batch waits for
// it.
func (s *Service) admit(ctx context.Context, wait time.Duration, arrival *loader.Arrival) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	arrival.Abandon()
	if s.waiting.Add(1) > int64(s.MaxQueue) {
		s.waiting.Add(-1)
		return &Error{Kind: ErrQueueFull, Msg: "too many requests waiting; retry shortly", RetryAfter: 1}
	}
	defer s.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-t.C:
		return &Error{Kind: ErrNoCapacity, Msg: "no capacity within the latency budget; retry shortly", RetryAfter: 1}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// score answers from the model or its rules; a Response with no Source means
// neither may answer.
func (s *Service) score(m *Model, req *Request, budget time.Duration, pin *loader.Loaded, pinArm string) Response {
	defer req.Arrival.Abandon()
	flat, n := req.Flat, req.Rows
	r := m.Routing()
	out := Response{Model: m.Name, Arm: ArmProduction}
	slot := m.Production
	if pin != nil {
		out.Arm = pinArm
	} else if r.Mode == "ab" && r.Traffic > 0 && pick(req.Key, r.Traffic) {
		if _, _, ok := m.Canary.Current(); ok {
			slot, out.Arm = m.Canary, ArmCanary
		}
	}
	l := pin
	if l == nil {
		if l = slot.Acquire(); l != nil {
			defer l.Release()
		}
	}
	if l == nil {
		out.Reason = fallback.ReasonNoModel
	} else if br := m.Breaker(l); !br.Allow() {
		out.Reason = fallback.ReasonCircuitOpen
		out.Attempted = l.Version
	} else {
		var res []float32
		var err error
		timedOut := false
		version := l.Version
		b := s.Batcher
		sig := l.Signature()
		switch {
		case req.Inputs != nil || !sig.Simple():
			inputs := req.Inputs
			if inputs == nil {
				inputs = []loader.Tensor{{Name: sig.Input.Name, Shape: []int64{int64(n), int64(sig.Features())}, Data: flat}}
			} else if ordered, oerr := orderInputs(sig, inputs, n); oerr != nil {
				inputs, err = nil, oerr // the canary's signature differs from production's
			} else {
				inputs = ordered
			}
			if inputs != nil {
				out.Tensors, err = l.RunTensors(inputs, budget)
				timedOut = errors.Is(err, loader.ErrBudget)
				res = contractOutput(out.Tensors)
			}
		case pin == nil && b != nil && n <= b.MaxRows/4:
			got, ok := b.Submit(req.Arrival, slot, flat, n, budget)
			res, err, timedOut = got.Out, got.Err, !ok
			if got.Version != 0 {
				version = got.Version
			}
			if got.Rows > 0 {
				s.metrics.batchRows.Observe(float64(got.Rows))
			}
		default:
			res, err = l.RunBudget(flat, n, budget)
			timedOut = errors.Is(err, loader.ErrBudget)
		}
		out.Version, out.Attempted = version, version
		switch {
		case timedOut:
			out.Reason = fallback.ReasonTimeout
		case errors.Is(err, loader.ErrNoSession):
			out.Reason = fallback.ReasonNoModel
		case err != nil:
			br.Record(false)
			out.Reason = fallback.ReasonModelError
			s.Logger.Warn("session run failed", "model", m.Name, "version", version, "err", err)
		default:
			outputs := sig.Outputs()
			if out.Tensors != nil && n > 0 {
				outputs = len(res) / n
			}
			if _, ok := artifact.ValidOutput(artifact.ContractOf(l.Card, sig), res, outputs); !ok {
				br.Record(false)
				out.Reason = fallback.ReasonInvalidOutput
			} else {
				br.Record(true)
				out.Scores, out.Outputs, out.Source = res, outputs, SourceModel
			}
		}
	}
	if out.Source != SourceModel {
		out.Tensors = nil
	}
	if out.Source == SourceModel {
		if r.Blend < 1 && m.Rules != nil && out.Outputs == 1 && out.Tensors == nil {
			w := float32(r.Blend)
			width := m.Rules.Features()
			for i := range out.Scores {
				out.Scores[i] = w*out.Scores[i] + (1-w)*m.Rules.Score(flat[i*width:(i+1)*width])
			}
		}
		if pin == nil && req.Inputs == nil && out.Tensors == nil && r.Mode == "shadow" && r.Traffic > 0 && out.Arm == ArmProduction && pick(req.Key, r.Traffic) {
			s.shadow(m, flat, n, out.Scores)
		}
		return out
	}
	out.Version = 0
	if m.Rules == nil || req.NoFallback || len(flat) != n*m.Rules.Features() {
		return out
	}
	out.Source, out.Outputs = SourceFallback, 1
	out.Scores = make([]float32, n)
	width := m.Rules.Features()
	for i := range out.Scores {
		out.Scores[i] = m.Rules.Score(flat[i*width : (i+1)*width])
	}
	return out
}

// observe counts an answer (or a failure to answer) for the monitor and the
// metrics.
func (s *Service) observe(m *Model, out Response, req *Request, start time.Time, unanswered bool) {
	latency := time.Since(start)
	if rec := s.recorder(m); rec != nil {
		o := report.Observation{Version: out.Attempted, Arm: out.Arm, Rows: req.Rows, Flat: req.Flat, Latency: latency,
			Error: out.Reason == fallback.ReasonModelError || (unanswered && out.Reason != "" && out.Reason != fallback.ReasonNoModel)}
		switch {
		case out.Source == SourceModel:
			o.Scores = out.Scores
		case out.Source == SourceFallback:
			o.Fallback = out.Reason
		}
		if unanswered {
			o.Refused = "unavailable"
		}
		rec.Observe(o)
	}
	source := out.Source
	if unanswered {
		source = "none"
	}
	series := s.metrics.answered(m.Name, versionLabel(out.Attempted), out.Arm, source)
	series.requests.Inc()
	series.rows.Add(float64(req.Rows))
	series.latency.Observe(latency.Seconds())
	if out.Reason == fallback.ReasonModelError || (unanswered && out.Reason != "" && out.Reason != fallback.ReasonNoModel) {
		series.errors.Inc()
	}
	if out.Source == SourceFallback {
		s.metrics.fallbacks.WithLabelValues(m.Name, versionLabel(out.Attempted), out.Arm, out.Reason).Inc()
	}
}

// shadow scores the same rows on the canary in the background and records how
// far it is from production; it never changes what the caller gets. At most a
// few shadow runs are in flight; beyond that, rows are not shadowed. It copies
// the rows, as the caller may reuse flat once the answer is out.
func (s *Service) shadow(m *Model, flat []float32, n int, production []float32) {
	select {
	case s.shadowSem <- struct{}{}:
	default:
		return
	}
	l := m.Canary.Acquire()
	if l == nil {
		<-s.shadowSem
		return
	}
	prod := append([]float32(nil), production...)
	flat = append([]float32(nil), flat...)
	rec := s.recorder(m)
	s.shadows.Add(1)
	go func() {
		defer s.shadows.Done()
		defer func() { <-s.shadowSem }()
		out, err := l.Run(flat, n)
		version := l.Version
		l.Release()
		if err != nil || len(out) != len(prod) {
			return
		}
		h := s.metrics.shadow.WithLabelValues(m.Name)
		for i, v := range out {
			h.Observe(math.Abs(float64(v - prod[i])))
		}
		if rec != nil {
			rec.ObserveShadow(version, out, prod)
		}
	}()
}

// pick reports whether a request falls in the canary's share: by a stable hash
// of its key (the same key always lands on the same side), or at random
// without one.
func pick(key string, percent float64) bool {
	if percent >= 100 {
		return true
	}
	if key == "" {
		return rand.Float64()*100 < percent
	}
	return KeyFraction(key)*100 < percent
}

// KeyFraction maps a key to [0,1) uniformly: FNV-1a, then a splitmix64
// finaliser so that similar keys spread.
func KeyFraction(key string) float64 {
	h := fnv.New64a()
	io.WriteString(h, key)
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// NoVersion says that m has no version v here, and which it has.
func NoVersion(m *Model, v string) string {
	served := "none is loaded"
	if vs := m.Versions(); len(vs) > 0 {
		served = "it serves " + joinAnd(vs)
	}
	return fmt.Sprintf("model %s has no version %q on this scorer (%s)", m.Name, truncate(v, 40), served)
}

func joinAnd(vs []string) string {
	out := ""
	for i, v := range vs {
		if i > 0 {
			out += " and "
		}
		out += v
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// contractOutput is the output a version's contract judges, and the monitor
// counts as its scores: the first float32 output (nil when there is none).
func contractOutput(ts []loader.Tensor) []float32 {
	for _, t := range ts {
		if d, ok := t.Data.([]float32); ok {
			return d
		}
	}
	return nil
}

// orderInputs checks named tensors against sig's inputs (each present once,
// of its type, of shape [rows, the input's other dimensions]) and returns
// them in the signature's order.
func orderInputs(sig artifact.Signature, inputs []loader.Tensor, rows int) ([]loader.Tensor, *Error) {
	ins := sig.Ins()
	if len(inputs) != len(ins) {
		var names []string
		for _, in := range ins {
			names = append(names, fmt.Sprintf("%q", in.Name))
		}
		return nil, Invalid("%d input tensors; the model takes %d: %s", len(inputs), len(ins), joinAnd(names))
	}
	out := make([]loader.Tensor, len(ins))
	for _, t := range inputs {
		i := slices.IndexFunc(ins, func(in artifact.Tensor) bool { return in.Name == t.Name })
		if i < 0 {
			return nil, Invalid("unexpected input %q: the model takes %s", truncate(t.Name, 40), sig)
		}
		if out[i].Name != "" {
			return nil, Invalid("input %q given twice", t.Name)
		}
		want := ins[i]
		if t.Type() != want.Type {
			return nil, Invalid("input %q is %s; the model takes %s", t.Name, artifact.ServableTypes[t.Type()], artifact.ServableTypes[want.Type])
		}
		if len(t.Shape) != len(want.Shape) || len(t.Shape) == 0 || t.Shape[0] != int64(rows) || !slices.Equal(t.Shape[1:], want.Shape[1:]) {
			return nil, Invalid("input %q has shape %v; the model takes [%d,%v] (%d rows)", t.Name, t.Shape, rows, want.Shape[1:], rows)
		}
		size := int64(1)
		for _, d := range t.Shape {
			size *= d
		}
		if int64(t.Len()) != size {
			return nil, Invalid("input %q has %d values; shape %v needs %d", t.Name, t.Len(), t.Shape, size)
		}
		out[i] = t
	}
	return out, nil
}
