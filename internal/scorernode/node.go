// Package scorernode assembles a scorer process: the scoring service with its
// models, what keeps each model loaded (a follower of the control plane, or a
// directory watcher), the HTTP transports and the reporter.
package scorernode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/node"
	"github.com/modelops/modelops/internal/predlog/logship"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/scorerapi"
)

// Config configures a scorer node.
type Config struct {
	ControlPlane string
	// Models are the models served; AllModels ("*") is every model in the
	// registry, followed as models come and go. The first is the default of
	// requests that name none.
	Models []string
	Listen string
	// GRPCListen is the address of the OIP v2 gRPC API ("" turns it off).
	GRPCListen string
	CacheDir   string
	ORTLibrary string
	// IntraOpThreads per ONNX Runtime session.
	IntraOpThreads int
	// ModelDir, when set, serves MODEL.onnx from this directory (watched) instead
	// of following a control plane.
	ModelDir string
	// BatchMaxRows > 0 turns on micro-batching: concurrent requests of up to a
	// quarter of this many rows share session runs of up to this many rows.
	BatchMaxRows int
	// BatchMaxWait bounds how long a batch waits for requests on their way.
	BatchMaxWait time.Duration
	// ReportInterval is how often the node reports to the monitor (0: 1 s).
	ReportInterval time.Duration
	// Node names this node in reports (default: host name and listen address).
	Node string
	// Token authenticates the node to the control plane (role scorer).
	Token string
	// APIKeys, when set, are required on the scoring API.
	APIKeys []string
	// TLSCert and TLSKey, when set, serve HTTPS.
	TLSCert, TLSKey string
	// FeedbackCapacity is how many answers the feedback join remembers.
	FeedbackCapacity int
	// LoadTimeout bounds the load of one version (fetch, verification, golden
	// inputs, warm-up); a load that runs out is a load error.
	LoadTimeout time.Duration
	// Log configures the prediction log: the share of answered rows sampled
	// (per model), shipped to the control plane in batches. Its Node is this
	// node's name. With ModelDir, there is no control plane and no log.
	Log logship.Config
}

// DefaultConfig returns the defaults of `scorer`.
func DefaultConfig() Config {
	return Config{
		ControlPlane:     "http://127.0.0.1:8080",
		Models:           []string{"calling-score"},
		Listen:           "127.0.0.1:8081",
		GRPCListen:       "127.0.0.1:8082",
		CacheDir:         filepath.Join(".data", "scorer-cache"),
		IntraOpThreads:   1,
		BatchMaxRows:     64,
		BatchMaxWait:     500 * time.Microsecond,
		FeedbackCapacity: 100000,
		LoadTimeout:      30 * time.Second,
		ReportInterval:   time.Second,
		Log:              logship.DefaultConfig(),
	}
}

// Validate says which setting is out of range, by its flag's name, before
// anything starts: a value quietly replaced by a default is a surprise later.
func (c Config) Validate() error {
	if len(c.Models) == 0 {
		return fmt.Errorf("--model: name at least one model, or %q for every model", AllModels)
	}
	for _, m := range c.Models {
		if m == AllModels && len(c.Models) > 1 {
			return fmt.Errorf("--model %q serves every model; name no other", AllModels)
		}
		if m == AllModels {
			continue
		}
		if err := registry.CheckModelName(m); err != nil {
			return fmt.Errorf("--model: %w", err)
		}
	}
	if c.ModelDir == "" {
		if err := client.CheckBaseURL(c.ControlPlane); err != nil {
			return fmt.Errorf("--control-plane %w", err)
		}
	}
	for _, k := range c.APIKeys {
		if k == "" || strings.TrimSpace(k) != k {
			return fmt.Errorf("--api-key %q: an API key may not be empty or begin or end with a space (SCORER_API_KEYS is comma-separated)", k)
		}
	}
	switch {
	case c.IntraOpThreads < 1 || c.IntraOpThreads > 256:
		return fmt.Errorf("--intra-op-threads %d: want 1 to 256", c.IntraOpThreads)
	case c.BatchMaxRows < 0:
		return fmt.Errorf("--batch-max-rows %d: want 0 (off) or more", c.BatchMaxRows)
	case c.BatchMaxWait < 0 || c.BatchMaxWait > time.Second:
		return fmt.Errorf("--batch-max-wait %s: want 0 to 1s", c.BatchMaxWait)
	case c.ReportInterval <= 0 || c.ReportInterval > time.Minute:
		return fmt.Errorf("--report-interval %s: want more than 0, at most 1m", c.ReportInterval)
	case c.FeedbackCapacity < 1 || c.FeedbackCapacity > report.MaxJoinCapacity:
		return fmt.Errorf("--feedback-capacity %d: want 1 to %d", c.FeedbackCapacity, report.MaxJoinCapacity)
	case c.LoadTimeout <= 0 || c.LoadTimeout > time.Hour:
		return fmt.Errorf("--load-timeout %s: want more than 0, at most 1h", c.LoadTimeout)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	for m := range c.Log.Rates {
		if err := registry.CheckModelName(m); err != nil {
			return fmt.Errorf("--log-sample-model: %w", err)
		}
	}
	return c.Log.Validate()
}

// AllModels, as the only --model, serves every model in the registry. (With
// --model-dir, the models named are served, and every NAME.onnx in it.)
const AllModels = "*"

// Node is a running scorer node: one ONNX Runtime environment, one scoring
// service, and per model its slots, its recorder and what keeps it loaded (a
// follower of the control plane, or a directory watcher). Each model is
// followed, loaded and swapped on its own.
type Node struct {
	Config Config
	Logger *slog.Logger
	// Slot, Served, Follower, Dir and Recorder are the first model's (the
	// default of requests that name none).
	Slot     *loader.Slot
	Served   *scorerapi.Served
	Follower *node.Follower
	Dir      *node.DirWatcher
	Recorder *report.Recorder
	Server   *scorerapi.Server
	GRPC     *scorerapi.GRPCServer
	API      *scorerapi.Scorer
	// Log is the prediction log (nil with ModelDir, or when every rate is 0).
	Log      *logship.Log
	reporter *report.Reporter

	cache  *loader.Cache
	client *client.Client
	runCtx context.Context
	mu     sync.Mutex
	models map[string]*modelNode
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// modelNode is one model on the node.
type modelNode struct {
	served   *scorerapi.Served
	recorder *report.Recorder
	follower *node.Follower
	dir      *node.DirWatcher
	cancel   context.CancelFunc
	done     chan struct{}
}

// loadError is why the node does not serve the model's deployment ("" when
// it does).
func (n *modelNode) loadError() string {
	switch {
	case n.follower != nil:
		return n.follower.Status().LastError
	case n.dir != nil:
		return n.dir.Status().LastError
	}
	return ""
}

// New returns an unopened scorer node.
func New(cfg Config, log *slog.Logger) *Node {
	return &Node{Config: cfg, Logger: log, models: map[string]*modelNode{}}
}

// Open initialises ONNX Runtime and the cache, binds the scoring API (which
// answers from the fallback rules until a model is loaded) and starts following
// the control plane (or the directory) for every model.
func (s *Node) Open(ctx context.Context) error {
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if s.Config.ModelDir != "" {
		if st, err := os.Stat(s.Config.ModelDir); err != nil || !st.IsDir() {
			return fmt.Errorf("--model-dir %s: not a directory", s.Config.ModelDir)
		}
	}
	if _, err := loader.Init(s.Config.ORTLibrary); err != nil {
		return err
	}
	s.cache = &loader.Cache{Dir: s.Config.CacheDir}
	if err := s.cache.Open(); err != nil {
		return err
	}
	s.client = client.New(s.Config.ControlPlane)
	s.client.Token = s.Config.Token
	scorer := scorerapi.NewScorer(s.Logger.With("component", "api"))
	s.API = scorer
	if s.Config.BatchMaxRows > 0 {
		scorer.Batcher = loader.NewBatcher(s.Config.BatchMaxRows, s.Config.BatchMaxWait)
	}
	scorer.APIKeys = s.Config.APIKeys
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.runCtx, s.cancel = runCtx, cancel
	if s.Config.ModelDir == "" && s.Config.Log.Sampling() {
		s.Log = logship.New(s.Config.Log, s.client, s.Logger.With("component", "predlog"))
		// A batch the control plane refuses (malformed, an unknown model, too
		// large, no log kept there) would be refused again.
		s.Log.Permanent = func(err error) bool {
			switch client.StatusOf(err) {
			case 400, 404, 413:
				return true
			}
			return false
		}
		scorer.Log = s.Log
		scorer.Metrics().Registry.MustRegister(s.Log.Collectors()...)
	}
	var names []string
	if s.Config.ModelDir != "" {
		// The models named, and every NAME.onnx in the directory.
		found, _ := s.discover()
		names = s.named(found)
	} else if s.Config.Models[0] == AllModels {
		var ok bool
		if names, ok = s.discover(); !ok {
			// Out of touch: serve what the cache last served, until the
			// control plane answers.
			names = s.cache.Deployments()
		}
	} else {
		names = s.Config.Models
	}
	for _, name := range names {
		s.addModel(name)
	}
	if first := s.first(); first != nil {
		scorer.Default = first.served.Name
	}
	s.Server = scorerapi.NewServer(s.Config.Listen, scorer.Handler(), s.Logger)
	s.Server.TLSCert, s.Server.TLSKey = s.Config.TLSCert, s.Config.TLSKey
	if err := s.Server.Open(); err != nil {
		cancel()
		s.wg.Wait()
		s.closeModels()
		return err
	}
	if s.Config.GRPCListen != "" {
		s.GRPC = &scorerapi.GRPCServer{Service: scorer.Service, Logger: s.Logger.With("component", "grpc"), Addr: s.Config.GRPCListen,
			APIKeys: s.Config.APIKeys, TLSCert: s.Config.TLSCert, TLSKey: s.Config.TLSKey}
		if err := s.GRPC.Open(); err != nil {
			_ = s.Server.Close(ctx)
			cancel()
			s.wg.Wait()
			s.closeModels()
			return err
		}
	}
	if s.Config.ModelDir == "" {
		nodeName := s.Config.Node
		if nodeName == "" {
			host, _ := os.Hostname()
			nodeName = host + "/" + s.Server.URL()
		}
		s.reporter = &report.Reporter{
			ControlPlane: s.Config.ControlPlane, Node: nodeName, Address: s.Server.URL(),
			Interval: s.Config.ReportInterval, Logger: s.Logger.With("component", "reporter"), Token: s.Config.Token,
			Ready:  func() bool { ok, _ := scorer.Ready(); return ok },
			Models: s.sources,
			// Reports go where the client goes: with several control
			// planes, to the next when one is out of reach.
			Deliver: s.client.Report,
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.reporter.Run(runCtx)
		}()
		if s.Log != nil {
			s.Log.Config.Node = nodeName // batches come from the node the token is bound to
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.Log.Run(runCtx)
			}()
		}
	}
	if s.Config.Models[0] == AllModels || s.Config.ModelDir != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.followCatalog(runCtx)
		}()
	}
	source := []any{"control_plane", s.Config.ControlPlane}
	if s.Config.ModelDir != "" {
		source = []any{"model_dir", s.Config.ModelDir}
	}
	s.Logger.Info("scorer listening", append([]any{"url", s.Server.URL(), "models", strings.Join(s.Config.Models, ",")}, source...)...)
	return nil
}

// first is the model requests that name none go to: the first of
// --model, else the first by name.
func (s *Node) first() *modelNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.Config.Models {
		if n, ok := s.models[name]; ok {
			return n
		}
	}
	var best *modelNode
	for name, n := range s.models {
		if best == nil || name < best.served.Name {
			best = n
		}
	}
	return best
}

// addModel starts serving name: its rules, slots and recorder, restored from
// the cache's last deployment if it can, and followed from then on.
func (s *Node) addModel(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.models[name]; ok {
		return
	}
	rules, err := fallback.For(name)
	if err != nil {
		s.Logger.Info("no fallback rules: requests fail while no version can answer", "model", name)
	}
	served := scorerapi.NewServed(name, rules)
	rec := report.NewRecorder()
	served.Recorder = rec
	served.Join = report.NewJoin(rec, s.Config.FeedbackCapacity)
	if s.Log != nil {
		served.Join.Outcomes = s.Log.Outcomes(name)
		s.Log.SetHolder(name, served.Join.Holds)
	}
	n := &modelNode{served: served, recorder: rec, done: make(chan struct{})}
	opts := loader.Options{IntraOpThreads: s.Config.IntraOpThreads}
	var run func(context.Context)
	if s.Config.ModelDir != "" {
		n.dir = &node.DirWatcher{Dir: s.Config.ModelDir, Model: name, Slot: served.Production, Options: opts, LoadTimeout: s.Config.LoadTimeout, Logger: s.Logger.With("component", "dir")}
		n.dir.Load()
		served.Status = func() any { return n.dir.Status() }
		served.LoadError = n.loadError
		served.FailedLoads = func() int { return n.dir.Status().FailedLoads }
		run = func(ctx context.Context) { n.dir.Run(ctx) }
	} else {
		n.follower = &node.Follower{
			Client: s.client, Model: name, Slot: served.Production, CandidateSlot: served.Canary, Cache: s.cache, Options: opts,
			OnRouting: func(traffic float64, mode string, blend float64) {
				served.SetRouting(scorerapi.Routing{Traffic: traffic, Mode: mode, Blend: blend})
			},
			OnLoad:      rec.SetReference,
			LoadTimeout: s.Config.LoadTimeout,
			Logger:      s.Logger.With("component", "follower"),
		}
		if err := n.follower.Restore(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.Logger.Warn("cannot serve the cached deployment", "model", name, "err", err)
		}
		served.Status = func() any { return n.follower.Status() }
		served.LoadError = n.loadError
		served.FailedLoads = func() int { return n.follower.Status().FailedLoads }
		run = func(ctx context.Context) { n.follower.Run(ctx) }
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	n.cancel = cancel
	s.models[name] = n
	s.API.Add(served)
	if len(s.models) == 1 || (len(s.Config.Models) > 0 && s.Config.Models[0] == name) {
		s.Slot, s.Served, s.Follower, s.Dir, s.Recorder = served.Production, served, n.follower, n.dir, rec
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(n.done)
		run(ctx)
	}()
}

// removeModel stops serving name and retires its sessions.
func (s *Node) removeModel(name string) {
	s.mu.Lock()
	n, ok := s.models[name]
	delete(s.models, name)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.API.Remove(name)
	if s.Log != nil {
		s.Log.SetHolder(name, nil)
	}
	n.cancel()
	<-n.done
	n.served.Close()
	s.Logger.Info("no longer serving a model the registry no longer has", "model", name)
}

// discover lists the models to serve with --model '*': the registry's (or
// the directory's NAME.onnx files); false when the control plane cannot be
// reached.
func (s *Node) discover() ([]string, bool) {
	if s.Config.ModelDir != "" {
		var names []string
		entries, _ := os.ReadDir(s.Config.ModelDir)
		for _, e := range entries {
			if name, ok := strings.CutSuffix(e.Name(), ".onnx"); ok && !e.IsDir() && registry.CheckModelName(name) == nil {
				names = append(names, name)
			}
		}
		return names, true
	}
	ctx, cancel := context.WithTimeout(s.runCtx, 5*time.Second)
	defer cancel()
	models, err := s.client.Models(ctx)
	if err != nil {
		return nil, false
	}
	names := make([]string, 0, len(models))
	for _, m := range models {
		names = append(names, m.Name)
	}
	return names, true
}

// named adds the models --model names to found ones.
func (s *Node) named(found []string) []string {
	var out []string
	for _, m := range s.Config.Models {
		if m != AllModels {
			out = append(out, m)
		}
	}
	for _, m := range found {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// CatalogInterval is how often --model '*' looks for models added or removed.
var CatalogInterval = time.Second

// followCatalog keeps the models served in step with the registry (or the
// directory) until ctx is done.
func (s *Node) followCatalog(ctx context.Context) {
	t := time.NewTicker(CatalogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names, ok := s.discover()
		if !ok {
			continue // out of touch: keep serving what is served
		}
		names = s.named(names)
		want := map[string]bool{}
		for _, name := range names {
			want[name] = true
			s.addModel(name)
		}
		s.mu.Lock()
		var gone []string
		for name := range s.models {
			if !want[name] {
				gone = append(gone, name)
			}
		}
		s.mu.Unlock()
		for _, name := range gone {
			s.removeModel(name)
		}
	}
}

// sources are what the reporter reports: every model served.
func (s *Node) sources() []report.ModelSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]report.ModelSource, 0, len(s.models))
	for name, n := range s.models {
		out = append(out, report.ModelSource{Model: name, Recorder: n.recorder, LoadError: n.loadError,
			Served: func() []report.Served {
				var served []report.Served
				for arm, slot := range map[string]*loader.Slot{scorerapi.ArmProduction: n.served.Production, scorerapi.ArmCanary: n.served.Canary} {
					if v, d, ok := slot.Current(); ok {
						served = append(served, report.Served{Arm: arm, Version: v, Digest: d})
					}
				}
				return served
			}})
	}
	return out
}

// URL is the scoring API's base URL.
func (s *Node) URL() string { return s.Server.URL() }

// Close stops following, drains requests in flight, and retires the sessions.
func (s *Node) Close(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	var err error
	if s.GRPC != nil {
		err = s.GRPC.Close(ctx)
	}
	if s.Server != nil {
		err = errors.Join(err, s.Server.Close(ctx))
	}
	// Loads in progress are stopped (ONNX Runtime terminates their runs);
	// wait for them within ctx, never past it.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.closeModels()
		if s.Log != nil {
			// What is buffered ships now, within ctx: a stop loses nothing
			// while the control plane answers.
			if ferr := s.Log.Flush(ctx); ferr != nil {
				n, _ := s.Log.Buffered()
				s.Logger.Warn("prediction log rows unshipped at exit", "records", n, "err", ferr)
			}
		}
	case <-ctx.Done():
		s.Logger.Warn("closing before every load stopped", "err", ctx.Err())
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

func (s *Node) closeModels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.models {
		n.served.Close()
	}
}
