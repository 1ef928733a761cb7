// Package scorerapi holds the scorer's transports, thin adapters over
// scoring.Service. This file is the Open Inference Protocol v2 over gRPC
// (inference.GRPCInferenceService, as Triton and KServe serve it), with the
// standard health service and server reflection beside it.
package scorerapi

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/modelops/modelops/internal/scorerapi/inferencepb"
	"github.com/modelops/modelops/internal/scoring"
)

// Defaults of a GRPCServer.
const (
	// DefaultGRPCRowBytes is the wire size allowed per row of the row limit:
	// 1,024 FP32 (or 512 FP64) values, plus the message's framing.
	DefaultGRPCRowBytes = 4096
	// DefaultGRPCReadTimeout bounds how long a call may take to send its
	// request message once it has opened its stream.
	DefaultGRPCReadTimeout = 10 * time.Second
	// DefaultGRPCStopGrace is how long Close lets calls in flight finish
	// when its context has no deadline.
	DefaultGRPCStopGrace = 10 * time.Second
	grpcMessageSlack     = 64 << 10
)

// GRPCServer serves a scoring.Service over gRPC. Set its fields, then Open.
type GRPCServer struct {
	Service *scoring.Service
	Logger  *slog.Logger
	// Addr is the address to listen on ("127.0.0.1:0" picks a port).
	Addr string
	// APIKeys, when set, are required on ModelInfer: metadata
	// "authorization: Bearer KEY" (or "x-api-key: KEY"), as on REST.
	APIKeys []string
	// TLSCert and TLSKey, when both set, serve TLS.
	TLSCert, TLSKey string
	// RowBytes is the wire size allowed per row: the largest message taken is
	// Service.MaxRows × RowBytes plus 64 KiB (default DefaultGRPCRowBytes).
	RowBytes int
	// ReadTimeout bounds the time from a call's start to its whole request
	// message (default DefaultGRPCReadTimeout): a client that holds a stream
	// open without sending gets DEADLINE_EXCEEDED.
	ReadTimeout time.Duration
	// Keepalive is the server's keepalive policy (default: a ping every 2
	// hours of silence, connections idle for 15 minutes closed) and
	// Enforcement what it allows clients (default: pings at most every 10 s,
	// also with no call in flight); a client pinging more often is sent away.
	Keepalive   keepalive.ServerParameters
	Enforcement keepalive.EnforcementPolicy
	// HealthInterval is how often the health service's statuses are brought
	// up to date with the models' readiness (default 500 ms).
	HealthInterval time.Duration

	srv     *grpc.Server
	lis     net.Listener
	health  *health.Server
	metrics *grpcMetrics
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// MaxMessageBytes is the largest request message the server takes.
func (g *GRPCServer) MaxMessageBytes() int {
	rows := g.Service.MaxRows
	if rows <= 0 {
		rows = 4096
	}
	per := g.RowBytes
	if per <= 0 {
		per = DefaultGRPCRowBytes
	}
	return rows*per + grpcMessageSlack
}

// Open listens and starts serving.
func (g *GRPCServer) Open() error {
	if g.Logger == nil {
		g.Logger = slog.New(slog.DiscardHandler)
	}
	if g.ReadTimeout <= 0 {
		g.ReadTimeout = DefaultGRPCReadTimeout
	}
	if g.HealthInterval <= 0 {
		g.HealthInterval = 500 * time.Millisecond
	}
	kp := g.Keepalive
	if kp == (keepalive.ServerParameters{}) {
		kp = keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Hour, Timeout: 20 * time.Second}
	}
	ep := g.Enforcement
	if ep == (keepalive.EnforcementPolicy{}) {
		ep = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	}
	var err error
	if g.metrics, err = newGRPCMetrics(g.Service.Metrics().Registry); err != nil {
		return err
	}
	opts := append(TransportOptions(g.MaxMessageBytes()),
		grpc.KeepaliveParams(kp),
		grpc.KeepaliveEnforcementPolicy(ep),
		grpc.InTapHandle(g.tap),
		grpc.ChainUnaryInterceptor(g.intercept),
	)
	if g.TLSCert != "" || g.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(g.TLSCert, g.TLSKey)
		if err != nil {
			return fmt.Errorf("gRPC TLS: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	}
	lis, err := net.Listen("tcp", g.Addr)
	if err != nil {
		return fmt.Errorf("gRPC listen %s: %w", g.Addr, err)
	}
	g.lis = lis
	g.srv = grpc.NewServer(opts...)
	inferencepb.RegisterGRPCInferenceServiceServer(g.srv, &inferenceServer{g: g})
	g.health = health.NewServer()
	healthpb.RegisterHealthServer(g.srv, g.health)
	reflection.Register(g.srv)
	g.refreshHealth(map[string]bool{})
	g.done = make(chan struct{})
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			g.Logger.Error("gRPC server stopped", "err", err)
		}
	}()
	go func() {
		defer g.wg.Done()
		g.watchHealth()
	}()
	g.Logger.Info("gRPC listening", "addr", lis.Addr().String(), "tls", g.TLSCert != "", "max_message_bytes", g.MaxMessageBytes())
	return nil
}

// TransportOptions are the server options of the scorer's gRPC transport
// (message size, flow control, codec, workers), without its policies (keys,
// keepalive, TLS): modelbench's null gRPC server runs on the same ones, so the
// floor it measures is this transport's.
func TransportOptions(maxMessageBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		// Windows of 1 MiB let a 256-row request (40 KB) in without waiting
		// for window updates, and turn off the BDP probing pings.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(1 << 20),
		grpc.ForceServerCodecV2(newCodec()),
		// Calls run on long-lived workers, whose stacks have grown to what
		// scoring takes, rather than each on a new goroutine growing its own.
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
	}
}

// ListenAddr is the address the server listens on.
func (g *GRPCServer) ListenAddr() string { return g.lis.Addr().String() }

// Close stops taking calls and lets the ones in flight finish, until ctx is
// done (DefaultGRPCStopGrace when it has no deadline); then it cuts the rest.
func (g *GRPCServer) Close(ctx context.Context) error {
	if g.srv == nil {
		return nil
	}
	var err error
	g.once.Do(func() {
		close(g.done)
		g.health.Shutdown() // probes see NOT_SERVING while calls drain
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, DefaultGRPCStopGrace)
			defer cancel()
		}
		stopped := make(chan struct{})
		go func() {
			g.srv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			g.srv.Stop()
			<-stopped
			err = fmt.Errorf("gRPC: calls still in flight when the grace ran out were cut: %w", ctx.Err())
		}
		g.wg.Wait()
	})
	return err
}

// watchHealth keeps the health service's statuses in step with readiness:
// "" for the whole scorer, each model's name for that model.
func (g *GRPCServer) watchHealth() {
	t := time.NewTicker(g.HealthInterval)
	defer t.Stop()
	known := map[string]bool{}
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
			g.refreshHealth(known)
		}
	}
}

func (g *GRPCServer) refreshHealth(known map[string]bool) {
	serving := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	ok, _ := g.Service.Ready()
	g.health.SetServingStatus("", serving(ok))
	g.health.SetServingStatus(inferencepb.GRPCInferenceService_ServiceDesc.ServiceName, serving(ok))
	seen := map[string]bool{}
	for _, m := range g.Service.Models() {
		seen[m.Name] = true
		known[m.Name] = true
		g.health.SetServingStatus(m.Name, serving(m.Ready()))
	}
	for name := range known {
		if !seen[name] {
			g.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
			delete(known, name)
		}
	}
}

// readTimer is the timer a call's tap started, stopped once its message is in.
type readTimer struct{}

// tap gives every inference call ReadTimeout to deliver its request message:
// past it the call's context ends, which ends the read. The timer stops once
// the message is in (intercept), so scoring itself is bounded by its budget
// alone.
func (g *GRPCServer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !strings.HasPrefix(info.FullMethodName, "/"+inferencepb.GRPCInferenceService_ServiceDesc.ServiceName+"/") {
		return ctx, nil // health watches and reflection streams run long by design
	}
	// The API key is checked on the headers, before the message is read: a
	// caller without one costs no more than them.
	if info.FullMethodName == inferencepb.GRPCInferenceService_ModelInfer_FullMethodName && !g.keyOK(info.Header) {
		g.Service.Metrics().Refused(401, "unauthenticated")
		g.metrics.observe("ModelInfer", codes.Unauthenticated, 0)
		return nil, status.Error(codes.Unauthenticated, "this scorer needs an API key: metadata authorization: Bearer KEY (or x-api-key: KEY)")
	}
	rc := &readContext{}
	rc.Context, rc.cancel = context.WithCancel(ctx)
	rc.timer = time.AfterFunc(g.ReadTimeout, func() {
		rc.late.Store(true)
		rc.cancel()
	})
	return rc, nil
}

// readContext is a call's context that ends ReadTimeout after the call began
// unless its message came in first; its error is then DeadlineExceeded, which
// the client reads as DEADLINE_EXCEEDED. (context.WithTimeout's timer could
// not be stopped without ending the context.)
type readContext struct {
	context.Context
	cancel context.CancelFunc
	timer  *time.Timer
	late   atomic.Bool
}

func (c *readContext) Err() error {
	if err := c.Context.Err(); err != nil && c.late.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

func (c *readContext) Value(key any) any {
	if key == (readTimer{}) {
		return c
	}
	return c.Context.Value(key)
}

// intercept runs once a unary call's message is in: it stops the read timer
// and counts the call.
func (g *GRPCServer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if rc, ok := ctx.Value(readTimer{}).(*readContext); ok {
		rc.timer.Stop()
	}
	start := time.Now()
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	resp, err := handler(ctx, req)
	g.metrics.observe(method, status.Code(err), time.Since(start))
	return resp, err
}

// keyOK reports whether the call's headers carry one of the API keys (or there are
// none), comparing in constant time.
func (g *GRPCServer) keyOK(md metadata.MD) bool {
	if len(g.APIKeys) == 0 {
		return true
	}
	key := ""
	if v := md.Get("x-api-key"); len(v) > 0 {
		key = v[0]
	} else if v := md.Get("authorization"); len(v) > 0 && len(v[0]) > 7 && strings.EqualFold(v[0][:7], "bearer ") {
		key = strings.TrimSpace(v[0][7:])
	}
	ok := 0
	for _, k := range g.APIKeys {
		ok |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return key != "" && ok == 1
}

// grpcMetrics count calls by protocol, method and status, beside the
// service's own series (which count the answers of every protocol).
type grpcMetrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newGRPCMetrics(reg *prometheus.Registry) (*grpcMetrics, error) {
	m := &grpcMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelops_scorer_protocol_requests_total", Help: "Calls to the scoring API by protocol, method and status code.",
		}, []string{"protocol", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "modelops_scorer_protocol_request_duration_seconds", Help: "Time to answer a call, transport included, by protocol and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"protocol", "method"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.CounterVec:
				m.calls = existing
			case *prometheus.HistogramVec:
				m.latency = existing
			}
		}
	}
	return m, nil
}

func (m *grpcMetrics) observe(method string, code codes.Code, d time.Duration) {
	m.calls.WithLabelValues("grpc", method, code.String()).Inc()
	m.latency.WithLabelValues("grpc", method).Observe(d.Seconds())
}
