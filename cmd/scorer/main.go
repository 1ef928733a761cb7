// Command scorer is a scorer node: it serves /v1/score from ONNX Runtime, follows
// the control plane's deployments and hot-swaps verified versions, and answers
// from the fallback rules when no verified model can.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/scorernode"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// --help prints the flags and succeeds, as modelctl's does.
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "scorer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := scorernode.DefaultConfig()
	if v := os.Getenv("MODELCTL_SERVER"); v != "" {
		cfg.ControlPlane = v
	}
	if v := os.Getenv("ONNXRUNTIME_LIB"); v != "" {
		cfg.ORTLibrary = v
	}
	if v := os.Getenv("SCORER_INTRA_OP_THREADS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("SCORER_INTRA_OP_THREADS=%q: %w", v, err)
		}
		cfg.IntraOpThreads = n
	}
	// A token holds no spaces: ones around it came from a file or a paste.
	cfg.Token = strings.TrimSpace(os.Getenv("MODELCTL_TOKEN"))
	if v := strings.TrimSpace(os.Getenv("MODELOPS_SCORER_TOKEN")); v != "" {
		cfg.Token = v
	}
	if v := os.Getenv("SCORER_API_KEYS"); v != "" {
		for _, k := range strings.Split(v, ",") {
			cfg.APIKeys = append(cfg.APIKeys, strings.TrimSpace(k)) // "a, b" means a and b
		}
	}
	// Flags override the environment.
	fs := flag.NewFlagSet("scorer", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: scorer [flags]

Serves /v1/score and Open Inference Protocol v2 from ONNX Runtime, following a
control plane's deployments (or, with --model-dir, a directory).

Environment:
  MODELOPS_SCORER_TOKEN   token for the control plane (a scorer token; else MODELCTL_TOKEN)
  MODELCTL_SERVER, ONNXRUNTIME_LIB, SCORER_API_KEYS, SCORER_INTRA_OP_THREADS
                          as the flags that name them; a flag given wins

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.ControlPlane, "control-plane", cfg.ControlPlane, "control plane URL, or a comma-separated list of its replicas, tried in turn when one is out of reach (env MODELCTL_SERVER)")
	modelsGiven := false
	fs.Func("model", "model to serve (repeatable; '*' for every model in the registry; --model-dir serves these and every NAME.onnx in it; default calling-score)", func(v string) error {
		if !modelsGiven {
			cfg.Models, modelsGiven = nil, true
		}
		cfg.Models = append(cfg.Models, v)
		return nil
	})
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "scoring API address")
	fs.StringVar(&cfg.GRPCListen, "grpc-listen", cfg.GRPCListen, "OIP v2 gRPC API address (empty: off)")
	fs.StringVar(&cfg.CacheDir, "cache-dir", cfg.CacheDir, "local artifact cache")
	fs.StringVar(&cfg.ORTLibrary, "onnxruntime-lib", cfg.ORTLibrary, "path of libonnxruntime.so (env ONNXRUNTIME_LIB)")
	fs.IntVar(&cfg.IntraOpThreads, "intra-op-threads", cfg.IntraOpThreads, "ONNX Runtime intra-op threads per session (env SCORER_INTRA_OP_THREADS)")
	fs.StringVar(&cfg.ModelDir, "model-dir", cfg.ModelDir, "serve MODEL.onnx (and MODEL.card.json) from this directory, watched, with no control plane")
	fs.IntVar(&cfg.BatchMaxRows, "batch-max-rows", cfg.BatchMaxRows, "micro-batch concurrent small requests into runs of up to `N` rows (0: off; make bench measures both)")
	fs.DurationVar(&cfg.BatchMaxWait, "batch-max-wait", cfg.BatchMaxWait, "longest a micro-batch waits for requests already on their way (a lone request never waits)")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", cfg.ReportInterval, "how often to report to the control plane's monitor")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "node name in reports (default: host name and listen address)")
	fs.IntVar(&cfg.FeedbackCapacity, "feedback-capacity", cfg.FeedbackCapacity, "answers remembered for POST /v1/feedback; multi-row answers hold at most 16 scores per answer of this in all")
	fs.DurationVar(&cfg.LoadTimeout, "load-timeout", cfg.LoadTimeout, "deadline of loading one version: fetch, verification, golden inputs and warm-up (ONNX Runtime stops a run that outlives it); a load that runs out is a load error")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS (and gRPC over TLS) with this certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the certificate's private key (PEM)")
	fs.Func("api-key", "require this API key on /v1/score, /v1/feedback and /v2 infer (repeatable; env SCORER_API_KEYS, comma-separated)", func(v string) error {
		cfg.APIKeys = append(cfg.APIKeys, v)
		return nil
	})
	fs.Float64Var(&cfg.Log.Rate, "log-sample", cfg.Log.Rate, "share of answered rows sampled into the prediction log, shipped to the control plane (0: off)")
	fs.Func("log-sample-model", "`NAME=RATE`: the share sampled for one model, over --log-sample (repeatable)", func(v string) error {
		name, rate, ok := strings.Cut(v, "=")
		r, err := strconv.ParseFloat(rate, 64)
		if !ok || err != nil {
			return fmt.Errorf("want NAME=RATE, e.g. calling-score=0.05")
		}
		if cfg.Log.Rates == nil {
			cfg.Log.Rates = map[string]float64{}
		}
		cfg.Log.Rates[name] = r
		return nil
	})
	fs.IntVar(&cfg.Log.BatchRows, "log-batch", cfg.Log.BatchRows, "rows and outcomes per prediction log shipment; a full batch ships at once (a kill -9 loses at most about one batch)")
	fs.DurationVar(&cfg.Log.Interval, "log-interval", cfg.Log.Interval, "how often a partial prediction log batch ships")
	fs.Int64Var(&cfg.Log.MaxBytes, "log-buffer", cfg.Log.MaxBytes, "`bytes` of prediction log kept while the control plane is away; beyond them the oldest rows are dropped (counted in modelops_predlog_dropped_total)")
	jsonCodec := fs.String("json-codec", scorerapi.HandCodec, "codec of the usual JSON bodies: hand (hand-written, the default) or library (goccy/go-json); make bench compares both")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Println("scorer", Version)
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := scorerapi.SetJSONCodec(*jsonCodec); err != nil {
		return fmt.Errorf("--json-codec: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s := scorernode.New(cfg, log)
	if err := s.Open(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-s.Server.Done():
		if err != nil {
			log.Error("server stopped", "err", err)
		}
	}
	log.Info("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Close(closeCtx)
}
