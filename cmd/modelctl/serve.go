package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/app"
)

type serveCmd struct{ *env }

// command hands serve's arguments to its own flag set (the standard library's,
// as the control plane's settings have always been parsed); its help goes to
// stdout like every other verb's.
func (c *serveCmd) command() *cobra.Command {
	help := func(cmd *cobra.Command) error {
		out := &serveCmd{env: &env{stdout: cmd.OutOrStdout(), stderr: cmd.OutOrStdout(), getenv: c.getenv}}
		if err := out.Run(cmd.Context(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			return err
		}
		return nil
	}
	cmd := &cobra.Command{
		Use:                "serve [--data DIR] [--listen ADDR] [--store URL]",
		Short:              "run the control plane",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "--" {
					break
				}
				if a == "-h" || a == "-help" || a == "--help" {
					return help(cmd)
				}
			}
			return c.Run(cmd.Context(), args)
		},
	}
	cmd.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		if err := help(cmd); err != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), err)
		}
	})
	return cmd
}

func (c *serveCmd) Usage() string {
	return "serve [--data DIR] [--listen ADDR] [--meta URL] [--store URL]   run the control plane"
}

func (c *serveCmd) Run(ctx context.Context, args []string) error {
	cfg := app.DefaultControlPlaneConfig()
	if v := c.getenv("MODELOPS_DATA"); v != "" {
		cfg.DataDir = v
	}
	if v := c.getenv("MODELOPS_STORE"); v != "" {
		cfg.Store = v
	}
	if v := c.getenv("MODELOPS_META"); v != "" {
		cfg.Meta = v
	}
	if v := c.getenv("ONNXRUNTIME_LIB"); v != "" {
		cfg.ORTLibrary = v
	}
	// A token holds no spaces: ones around it came from a file or a paste.
	cfg.AdminToken = strings.TrimSpace(c.getenv("MODELOPS_ADMIN_TOKEN"))
	fs := c.flags(c, "serve")
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, `usage: modelctl %s

Environment:
  MODELOPS_ADMIN_TOKEN   an admin token's secret (`+"`modelctl token new`"+` makes one); without it a
                         registry with no admin token makes one and prints it once
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                         credentials for an s3:// store
  MODELOPS_DATA, MODELOPS_META, MODELOPS_STORE, ONNXRUNTIME_LIB
                         as the flags that name them; a flag given wins

Flags:
`, c.Usage())
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for registry.db (with the default --meta), uploads being verified and, by default, the artifacts (env MODELOPS_DATA)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "API address")
	fs.StringVar(&cfg.Meta, "meta", cfg.Meta, "metadata store URL: bolt:///dir/registry.db, or etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?tls_ca=…&tls_cert=…&tls_key=…&password_file=…] shared by several control planes (default bolt://DATA/registry.db; env MODELOPS_META)")
	fs.StringVar(&cfg.Store, "store", cfg.Store, "blob store URL: file:///dir or s3://bucket/prefix?endpoint=…&region=… (default file://DATA/artifacts; env MODELOPS_STORE)")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "URL other control planes reach this one at, with --meta etcd:// (default: the --listen address)")
	fs.StringVar(&cfg.ORTLibrary, "onnxruntime-lib", cfg.ORTLibrary, "path of libonnxruntime.so (env ONNXRUNTIME_LIB)")
	fs.Int64Var(&cfg.MaxArtifactBytes, "max-artifact-bytes", cfg.MaxArtifactBytes, "largest artifact a push may carry")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the certificate's private key (PEM)")
	fs.BoolVar(&cfg.NoAuth, "insecure-no-auth", false, "serve the API without tokens (never on a shared network)")
	fs.DurationVar(&cfg.MonitorWindow, "monitor-window", cfg.MonitorWindow, "how far back health and rollback decisions look")
	fs.DurationVar(&cfg.VerifyCPUTime, "verify-cpu", cfg.VerifyCPUTime, "CPU time a push's verification may use (its child process is killed past it)")
	fs.Int64Var(&cfg.VerifyMemory, "verify-memory", cfg.VerifyMemory, "address space, in bytes, of a push's verification process")
	fs.DurationVar(&cfg.VerifyTimeout, "verify-timeout", cfg.VerifyTimeout, "how long a push's verification may take")
	fs.DurationVar(&cfg.EvalInterval, "eval-interval", cfg.EvalInterval, "how often the monitor evaluates every model")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "connections held at once, in all (0: no bound)")
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", cfg.MaxConnsPerAddr, "connections held at once from one address (0: no bound; a load balancer in front is one address)")
	fs.IntVar(&cfg.MaxWatchStreamsPerToken, "max-watch-streams-per-token", cfg.MaxWatchStreamsPerToken, "watch streams one token may hold open (a scorer holds one a model it serves)")
	fs.IntVar(&cfg.MaxNodes, "max-nodes", cfg.MaxNodes, "scorer nodes the monitor follows at once (each costs memory; past it a new node's reports get 503 until a silent one is forgotten)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	cp := app.NewControlPlane(cfg, log)
	if err := cp.Open(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-cp.Server.Done():
		if err != nil {
			log.Error("server stopped", "err", err)
		}
	}
	log.Info("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cp.Close(closeCtx)
}
