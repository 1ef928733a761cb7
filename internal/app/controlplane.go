// Package app assembles the two processes, the control plane and a scorer node,
// from their parts, so that the binaries and the end-to-end tests run the very
// same wiring. Configuration arrives as plain fields; flags and environment stay
// in cmd/.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelops/modelops/web"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/predlog/logstore"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"

	// The storage drivers, each registering its URL scheme.
	_ "github.com/modelops/modelops/internal/registry/boltmeta"
	_ "github.com/modelops/modelops/internal/registry/etcdmeta"
	_ "github.com/modelops/modelops/internal/registry/fileblob"
	_ "github.com/modelops/modelops/internal/registry/memblob"
	_ "github.com/modelops/modelops/internal/registry/s3blob"
)

// ControlPlaneConfig configures `modelctl serve`.
type ControlPlaneConfig struct {
	// DataDir holds registry.db (by default), the staging area of pushes and,
	// by default, the artifacts.
	DataDir string
	// Meta is the metadata store URL; default bolt://DATA/registry.db. With
	// etcd://HOST:PORT,…/PREFIX several control planes share one registry.
	Meta string
	// Listen is the address of the API, e.g. 127.0.0.1:8080 or :0.
	Listen string
	// Store is the blob store URL; default file://DATA/artifacts.
	Store string
	// ORTLibrary is an explicit path of libonnxruntime (optional).
	ORTLibrary string
	// MaxArtifactBytes bounds a push.
	MaxArtifactBytes int64
	// MonitorWindow is how far back health and rollback decisions look.
	MonitorWindow time.Duration
	// EvalInterval is how often the monitor evaluates every model.
	EvalInterval time.Duration
	// MonitorRetain is how long the monitor keeps chart points (0: the
	// monitor's 24 h, thinned to a point a minute past 15 min); its byte budget still holds, dropping the oldest first.
	MonitorRetain time.Duration
	// AdminToken is a bootstrap admin token (MODELOPS_ADMIN_TOKEN); without one
	// and with no token in the registry, one is created and printed once.
	AdminToken string
	// NoAuth serves the API without tokens. Only for experiments on a laptop.
	NoAuth bool
	// TLSCert and TLSKey, when set, serve HTTPS.
	TLSCert, TLSKey string
	// VerifyCommand runs a push's verify child (default: this executable with
	// loader.VerifyCommand). VerifyCPUTime, VerifyMemory (address space, bytes)
	// and VerifyTimeout are its limits; VerifyConcurrency bounds the children
	// at once.
	VerifyCommand     []string
	VerifyCPUTime     time.Duration
	VerifyMemory      int64
	VerifyTimeout     time.Duration
	VerifyConcurrency int
	// MaxConns and MaxConnsPerAddr bound the connections the control plane
	// holds, in all and from one address (a load balancer in front is one
	// address: raise it there); 0 is no bound.
	MaxConns, MaxConnsPerAddr int
	// MaxWatchStreamsPerToken bounds the watch streams one token holds open.
	MaxWatchStreamsPerToken int
	// MaxNodes bounds the scorer nodes the monitor follows at once.
	MaxNodes int
	// Advertise is the URL other replicas reach this one at (reports are
	// forwarded to the monitor's replica); default: the listener's URL.
	Advertise string
}

// DefaultControlPlaneConfig returns the embedded default.
func DefaultControlPlaneConfig() ControlPlaneConfig {
	return ControlPlaneConfig{DataDir: ".data", Listen: "127.0.0.1:8080", MaxArtifactBytes: 1 << 30, MonitorWindow: 30 * time.Second, EvalInterval: time.Second,
		VerifyCPUTime: time.Minute, VerifyMemory: 4 << 30, VerifyTimeout: 2 * time.Minute, VerifyConcurrency: 2,
		MaxConns: 16384, MaxConnsPerAddr: 4096, MaxWatchStreamsPerToken: api.DefaultMaxWatchStreamsPerToken, MaxNodes: monitor.DefaultMaxNodes}
}

// Validate says which setting is out of range, by its flag's name, before
// anything starts.
func (c ControlPlaneConfig) Validate() error {
	switch {
	case c.MaxConns < 0 || c.MaxConnsPerAddr < 0:
		return fmt.Errorf("--max-conns %d, --max-conns-per-addr %d: want 0 (no bound) or more", c.MaxConns, c.MaxConnsPerAddr)
	case c.MaxNodes < 0:
		return fmt.Errorf("--max-nodes %d: want 1 or more (0: the default, %d)", c.MaxNodes, monitor.DefaultMaxNodes)
	case c.MaxWatchStreamsPerToken < 0:
		return fmt.Errorf("--max-watch-streams-per-token %d: want 1 or more", c.MaxWatchStreamsPerToken)
	case c.MaxArtifactBytes < 1:
		return fmt.Errorf("--max-artifact-bytes %d: want more than 0", c.MaxArtifactBytes)
	case c.MonitorWindow < time.Second:
		return fmt.Errorf("--monitor-window %s: want 1s or more (scorers report every second)", c.MonitorWindow)
	case c.EvalInterval <= 0 || c.EvalInterval > c.MonitorWindow:
		return fmt.Errorf("--eval-interval %s: want more than 0, at most the monitor window (%s)", c.EvalInterval, c.MonitorWindow)
	case c.VerifyCPUTime < time.Second:
		return fmt.Errorf("--verify-cpu %s: want 1s or more", c.VerifyCPUTime)
	case c.VerifyMemory < 256<<20:
		return fmt.Errorf("--verify-memory %d: want 268435456 (256 MiB) or more", c.VerifyMemory)
	case c.VerifyTimeout < time.Second:
		return fmt.Errorf("--verify-timeout %s: want 1s or more", c.VerifyTimeout)
	case c.VerifyConcurrency < 1 || c.VerifyConcurrency > 64:
		return fmt.Errorf("--verify-concurrency %d: want 1 to 64", c.VerifyConcurrency)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	return nil
}

// ControlPlane is the running control plane.
type ControlPlane struct {
	Config   ControlPlaneConfig
	Logger   *slog.Logger
	Registry *registry.Registry
	Server   *api.Server
	Monitor  *monitor.Monitor
	// Verifier verifies pushes in child processes.
	Verifier *ProcessVerifier
	api      *api.ControlPlane
	stop     context.CancelFunc
	done     chan struct{}

	// With a shared metadata store the monitor runs on the elected replica.
	elector elector
	self    string
	leading atomic.Bool
	proxies sync.Map // leader URL → *httputil.ReverseProxy
}

// elector is a metadata store that elects one replica among several
// (etcdmeta.Store).
type elector interface {
	Campaign(ctx context.Context, name, value string, lead func(ctx context.Context))
	Leader(ctx context.Context, name string) (string, error)
}

// NewControlPlane returns an unopened control plane.
func NewControlPlane(cfg ControlPlaneConfig, log *slog.Logger) *ControlPlane {
	return &ControlPlane{Config: cfg, Logger: log}
}

// Open initialises ONNX Runtime, opens the blob store and the registry, and binds
// the API listener.
func (c *ControlPlane) Open(ctx context.Context) error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	lib, err := loader.Init(c.Config.ORTLibrary)
	if err != nil {
		return err
	}
	command := c.Config.VerifyCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("verify process: %w", err)
		}
		command = []string{exe, loader.VerifyCommand}
	}
	c.Verifier = NewProcessVerifier(command, c.Config.VerifyConcurrency)
	c.Verifier.Library, c.Verifier.CPUTime, c.Verifier.AddressSpace, c.Verifier.Timeout = lib, c.Config.VerifyCPUTime, c.Config.VerifyMemory, c.Config.VerifyTimeout
	if err := os.MkdirAll(c.Config.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store := c.Config.Store
	if store == "" {
		abs, err := filepath.Abs(filepath.Join(c.Config.DataDir, "artifacts"))
		if err != nil {
			return err
		}
		store = "file://" + abs
	}
	blobs, err := registry.OpenBlobStore(ctx, store)
	if err != nil {
		return err
	}
	metaURL := c.Config.Meta
	if metaURL == "" {
		abs, err := filepath.Abs(filepath.Join(c.Config.DataDir, "registry.db"))
		if err != nil {
			return err
		}
		metaURL = (&url.URL{Scheme: "bolt", Path: abs}).String()
	}
	meta, err := registry.OpenMetaStore(ctx, metaURL)
	if err != nil {
		return err
	}
	reg := registry.New("", blobs, c.Verifier)
	reg.Meta = meta
	reg.StagingDir = filepath.Join(c.Config.DataDir, "staging")
	reg.Logger = c.Logger.With("component", "registry")
	reg.MaxArtifactBytes = c.Config.MaxArtifactBytes
	if err := reg.Open(); err != nil {
		meta.Close()
		return err
	}
	c.Registry = reg
	if !c.Config.NoAuth && c.Config.AdminToken != "" {
		if _, err := reg.AddToken("bootstrap-admin", registry.RoleAdmin, c.Config.AdminToken); err != nil {
			reg.Close()
			return fmt.Errorf("MODELOPS_ADMIN_TOKEN: %w", err)
		}
	}
	cp := api.NewControlPlane(reg, c.Logger.With("component", "api"))
	cp.Dashboard = web.Static
	if c.Config.MaxWatchStreamsPerToken > 0 {
		cp.MaxWatchStreamsPerToken = c.Config.MaxWatchStreamsPerToken
	}
	cp.RequireAuth = !c.Config.NoAuth
	cp.MaxPushBytes = reg.MaxArtifactBytes + artifactMultipartSlack
	if ss, ok := meta.(api.SessionStore); ok {
		// A shared metadata store keeps dashboard sessions too: any replica
		// signs a browser in, and a restart signs nobody out.
		cp.Sessions = ss
	}
	if objects, ok := blobs.(registry.ObjectStore); ok {
		cp.Logs = logstore.New(objects)
	}
	c.api = cp
	c.Monitor = monitor.New(reg, c.Logger.With("component", "monitor"))
	c.Monitor.Window = c.Config.MonitorWindow
	c.Monitor.MaxNodes = c.Config.MaxNodes
	if c.Config.MonitorRetain > 0 {
		c.Monitor.Retain = c.Config.MonitorRetain
	}
	cp.Monitor = c.Monitor
	handler := cp.Handler()
	if el, ok := meta.(elector); ok {
		c.elector = el
		handler = c.withMonitorLeader(handler)
	}
	c.Server = api.NewServer(c.Config.Listen, handler, c.Logger)
	c.Server.TLSCert, c.Server.TLSKey = c.Config.TLSCert, c.Config.TLSKey
	c.Server.MaxConns, c.Server.MaxConnsPerAddr = c.Config.MaxConns, c.Config.MaxConnsPerAddr
	if err := c.Server.Open(); err != nil {
		reg.Close()
		return err
	}
	// A first admin token is made only once the API listens: one printed by a
	// start that then failed (its port taken) would be lost, and with it every
	// way in. Until it exists no request can authenticate anyway.
	if !c.Config.NoAuth && c.Config.AdminToken == "" {
		if err := c.firstToken(); err != nil {
			c.Server.Close(context.Background())
			reg.Close()
			return err
		}
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop, c.done = stop, make(chan struct{})
	c.self = c.Config.Advertise
	if c.self == "" {
		c.self = c.Server.URL()
	}
	go func() {
		defer close(c.done)
		if c.elector == nil {
			c.Monitor.Run(runCtx, c.Config.EvalInterval)
			return
		}
		c.elector.Campaign(runCtx, monitorElection, c.self, func(ctx context.Context) {
			c.leading.Store(true)
			defer c.leading.Store(false)
			c.Logger.Info("this replica runs the monitor", "url", c.self)
			c.Monitor.Run(ctx, c.Config.EvalInterval)
		})
	}()
	c.Logger.Info("control plane listening", "url", c.Server.URL(), "store", blobs.String(), "meta", redacted(metaURL), "onnxruntime", loader.Version())
	return nil
}

// monitorElection names the office of the replica that runs the monitor.
const monitorElection = "monitor"

// withMonitorLeader serves GET /api/v1/leader (which replica runs the monitor)
// and sends scorer reports that reach another replica on to the monitor's,
// so that its windows hold the whole fleet's traffic, and so the reads of what
// the monitor holds.
func (c *ControlPlane) withMonitorLeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/leader" && r.Method == http.MethodGet:
			leader, err := c.elector.Leader(r.Context(), monitorElection)
			if err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "unavailable", "message": err.Error()}})
				return
			}
			writeJSON(w, http.StatusOK, wire.LeaderInfo{Monitor: leader, Self: c.self, Leading: c.leading.Load()})
			return
		case monitorRoute(r) && !c.leading.Load() && r.Header.Get(forwardedHeader) == "":
			leader, err := c.elector.Leader(r.Context(), monitorElection)
			if err != nil || leader == "" {
				msg := "no replica runs the monitor yet; the next report will find one"
				if err != nil {
					msg = err.Error()
				}
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "unavailable", "message": msg}})
				return
			}
			if leader != c.self {
				c.proxy(leader).ServeHTTP(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// monitorRoute says whether a request is for the monitor: reports, and the
// reads of what it holds (fleet, health, series, a rollout's analysis).
func monitorRoute(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost:
		return p == "/api/v1/reports"
	case r.Method == http.MethodGet:
		return p == "/api/v1/fleet" || (strings.HasPrefix(p, "/api/v1/models/") && (strings.HasSuffix(p, "/health") || strings.HasSuffix(p, "/series") || strings.HasSuffix(p, "/rollout")))
	}
	return false
}

// forwardedHeader marks a report one replica sent on to another: it is
// ingested where it arrives, never sent on again.
const forwardedHeader = "X-Modelops-Forwarded-By"

func (c *ControlPlane) proxy(leader string) *httputil.ReverseProxy {
	if p, ok := c.proxies.Load(leader); ok {
		return p.(*httputil.ReverseProxy)
	}
	target, err := url.Parse(leader)
	if err != nil {
		target = &url.URL{}
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(forwardedHeader, c.self)
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "unavailable",
				"message": fmt.Sprintf("the monitor's replica %s cannot be reached: %v", leader, err)}})
		},
	}
	c.proxies.Store(leader, p)
	return p
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// firstToken makes sure an admin can get in when no token is configured: with
// none stored, a new one is created and printed once. (A configured token is
// stored, hashed, before the API opens.)
func (c *ControlPlane) firstToken() error {
	if c.Registry.HasTokens() {
		return nil
	}
	t, secret, err := c.Registry.CreateToken(context.Background(), "first-admin", registry.RoleAdmin)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nCreated the first admin token (id %s). It is shown only now; keep it:\n\n    export MODELCTL_TOKEN=%s\n\n", t.ID, secret)
	return nil
}

// redacted is a store URL without its password, for logs.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// artifactMultipartSlack is room for the card and multipart framing on top of the
// artifact limit.
const artifactMultipartSlack = 16 << 20

// URL is the API's base URL.
func (c *ControlPlane) URL() string { return c.Server.URL() }

// Close stops the server, then closes the registry.
func (c *ControlPlane) Close(ctx context.Context) error {
	var err error
	if c.stop != nil {
		c.stop()
		<-c.done
	}
	if c.api != nil {
		c.api.CloseStreams()
	}
	if c.Server != nil {
		err = c.Server.Close(ctx)
	}
	if c.Registry != nil {
		if cerr := c.Registry.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
