package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/node"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/scorerapi"
)

// ScorerConfig configures a scorer node.
type ScorerConfig struct {
	ControlPlane string
	Model        string
	Listen       string
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
}

// DefaultScorerConfig returns the defaults of `scorer`.
func DefaultScorerConfig() ScorerConfig {
	return ScorerConfig{
		ControlPlane:     "http://127.0.0.1:8080",
		Model:            "calling-score",
		Listen:           "127.0.0.1:8081",
		GRPCListen:       "127.0.0.1:8082",
		CacheDir:         filepath.Join(".data", "scorer-cache"),
		IntraOpThreads:   1,
		BatchMaxRows:     64,
		BatchMaxWait:     500 * time.Microsecond,
		FeedbackCapacity: 100000,
		ReportInterval:   time.Second,
	}
}

// Validate says which setting is out of range, by its flag's name, before
// anything starts: a value quietly replaced by a default is a surprise later.
func (c ScorerConfig) Validate() error {
	if err := registry.CheckModelName(c.Model); err != nil {
		return fmt.Errorf("--model: %w", err)
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
	case c.FeedbackCapacity < 1 || c.FeedbackCapacity > monitor.MaxJoinCapacity:
		return fmt.Errorf("--feedback-capacity %d: want 1 to %d", c.FeedbackCapacity, monitor.MaxJoinCapacity)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	return nil
}

// Scorer is a running scorer node.
type Scorer struct {
	Config   ScorerConfig
	Logger   *slog.Logger
	Slot     *loader.Slot
	Served   *api.Served
	Follower *node.Follower
	Dir      *node.DirWatcher
	Server   *api.Server
	GRPC     *scorerapi.GRPCServer
	Recorder *monitor.Recorder
	reporter *monitor.Reporter

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewScorer returns an unopened scorer node.
func NewScorer(cfg ScorerConfig, log *slog.Logger) *Scorer {
	return &Scorer{Config: cfg, Logger: log}
}

// Open initialises ONNX Runtime and the cache, binds the scoring API (which
// answers from the fallback rules until a model is loaded) and starts following
// the control plane.
func (s *Scorer) Open(ctx context.Context) error {
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if _, err := loader.Init(s.Config.ORTLibrary); err != nil {
		return err
	}
	cache := &loader.Cache{Dir: s.Config.CacheDir}
	if err := cache.Open(); err != nil {
		return err
	}
	rules, err := fallback.For(s.Config.Model)
	if err != nil {
		s.Logger.Warn("no fallback rules: requests fail until a model is loaded", "model", s.Config.Model)
	}
	served := api.NewServed(s.Config.Model, rules)
	s.Served = served
	s.Slot = served.Production
	s.Recorder = monitor.NewRecorder()
	opts := loader.Options{IntraOpThreads: s.Config.IntraOpThreads}
	var run func(context.Context)
	if s.Config.ModelDir != "" {
		s.Dir = &node.DirWatcher{Dir: s.Config.ModelDir, Model: s.Config.Model, Slot: served.Production, Options: opts, Logger: s.Logger.With("component", "dir")}
		if st, err := os.Stat(s.Config.ModelDir); err != nil || !st.IsDir() {
			return fmt.Errorf("--model-dir %s: not a directory", s.Config.ModelDir)
		}
		s.Dir.Load()
		served.Status = func() any { return s.Dir.Status() }
		served.FailedLoads = func() int { return s.Dir.Status().FailedLoads }
		run = func(ctx context.Context) { s.Dir.Run(ctx) }
	} else {
		cl := client.New(s.Config.ControlPlane)
		cl.Token = s.Config.Token
		s.Follower = &node.Follower{
			Client: cl, Model: s.Config.Model, Slot: served.Production, CandidateSlot: served.Canary, Cache: cache, Options: opts,
			OnRouting: func(traffic float64, mode string, blend float64) {
				served.SetRouting(api.Routing{Traffic: traffic, Mode: mode, Blend: blend})
			},
			OnLoad: s.Recorder.SetReference,
			Logger: s.Logger.With("component", "follower"),
		}
		if err := s.Follower.Restore(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.Logger.Warn("cannot serve the cached deployment", "err", err)
		}
		served.Status = func() any { return s.Follower.Status() }
		served.FailedLoads = func() int { return s.Follower.Status().FailedLoads }
		run = func(ctx context.Context) { s.Follower.Run(ctx) }
	}
	scorer := api.NewScorer(s.Logger.With("component", "api"), served)
	scorer.Recorder = s.Recorder
	if s.Config.BatchMaxRows > 0 {
		scorer.Batcher = loader.NewBatcher(s.Config.BatchMaxRows, s.Config.BatchMaxWait)
	}
	scorer.Join = monitor.NewJoin(s.Recorder, s.Config.FeedbackCapacity)
	scorer.APIKeys = s.Config.APIKeys
	s.Server = api.NewFastServer(s.Config.Listen, scorer.Fast(), s.Logger)
	s.Server.TLSCert, s.Server.TLSKey = s.Config.TLSCert, s.Config.TLSKey
	if err := s.Server.Open(); err != nil {
		// Let go of a session restored from the cache.
		served.Production.Close()
		served.Canary.Close()
		return err
	}
	if s.Config.GRPCListen != "" {
		s.GRPC = &scorerapi.GRPCServer{Service: scorer.Service, Logger: s.Logger.With("component", "grpc"), Addr: s.Config.GRPCListen,
			APIKeys: s.Config.APIKeys, TLSCert: s.Config.TLSCert, TLSKey: s.Config.TLSKey}
		if err := s.GRPC.Open(); err != nil {
			_ = s.Server.Close(ctx)
			served.Production.Close()
			served.Canary.Close()
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if s.Follower != nil {
		nodeName := s.Config.Node
		if nodeName == "" {
			host, _ := os.Hostname()
			nodeName = host + "/" + s.Server.URL()
		}
		s.reporter = &monitor.Reporter{
			ControlPlane: s.Config.ControlPlane, Node: nodeName, Address: s.Server.URL(), Model: s.Config.Model,
			Interval: s.Config.ReportInterval, Recorder: s.Recorder, Logger: s.Logger.With("component", "reporter"), Token: s.Config.Token,
			Ready:     func() bool { ok, _ := scorer.Ready(); return ok },
			LoadError: func() string { return s.Follower.Status().LastError },
			Served: func() []monitor.Served {
				var out []monitor.Served
				for arm, slot := range map[string]*loader.Slot{api.ArmProduction: served.Production, api.ArmCanary: served.Canary} {
					if v, d, ok := slot.Current(); ok {
						out = append(out, monitor.Served{Arm: arm, Version: v, Digest: d})
					}
				}
				return out
			},
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.reporter.Run(runCtx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		run(runCtx)
	}()
	source := []any{"control_plane", s.Config.ControlPlane}
	if s.Config.ModelDir != "" {
		source = []any{"model_dir", s.Config.ModelDir}
	}
	s.Logger.Info("scorer listening", append([]any{"url", s.Server.URL(), "model", s.Config.Model}, source...)...)
	return nil
}

// URL is the scoring API's base URL.
func (s *Scorer) URL() string { return s.Server.URL() }

// Close stops following, drains requests in flight, and retires the session.
func (s *Scorer) Close(ctx context.Context) error {
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
	s.wg.Wait()
	if s.Served != nil {
		s.Served.Production.Close()
		s.Served.Canary.Close()
	}
	return err
}
