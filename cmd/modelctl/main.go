// Command modelctl is the operator's tool: `modelctl serve` runs the control plane,
// and every other verb talks to a control plane over HTTP.
//
// The verbs are small types, each with Run(ctx, args); spf13/cobra dispatches
// them, and gives help, suggestions and shell completion the way kubectl does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelops/modelops/internal/loader"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

// env carries what every verb shares: output streams, environment, and the
// flags every client verb takes.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	// The root's flags: --server, --context, -o (parsed into out before a
	// verb runs).
	server, contextName, output string
	out                         *printer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if err := e.run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "modelctl:", escText(err.Error()))
		os.Exit(1)
	}
}

// run runs one command line.
func (e *env) run(ctx context.Context, args []string) error {
	root := e.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if errors.Is(err, syscall.ECONNREFUSED) {
		// The commonest first stumble: nothing runs there yet, or elsewhere.
		err = fmt.Errorf("%w\n(nothing listens there: start one with `modelctl serve` or `make run`, or point --server, MODELCTL_SERVER or a context (`modelctl config`) at yours)", err)
	}
	return err
}

// rootCommand builds the command tree: one cobra.Command per verb, each
// running a verb type's Run.
func (e *env) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "modelctl",
		Short: "a control plane for ONNX models with hot reload",
		Long: `modelctl: a control plane for ONNX models with hot reload.

Client verbs ask the control plane named by --server, else MODELCTL_SERVER, else
the current context of the config file (` + "`modelctl config`" + `), else http://127.0.0.1:8080,
and send the token in MODELCTL_TOKEN, else the context's token file.`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A mistyped verb gets the nearest ones.
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			e.out, err = parseOutput(e.output)
			return err
		},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", "", "control plane URL (env MODELCTL_SERVER; default: the context's, else http://127.0.0.1:8080)")
	pf.StringVar(&e.contextName, "context", "", "the config file's context to use (default: its current context)")
	pf.StringVarP(&e.output, "output", "o", "table", "output: "+outputFormats)
	root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json", "yaml", "jsonpath="}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	})
	root.RegisterFlagCompletionFunc("context", func(cmd *cobra.Command, _ []string, s string) ([]string, cobra.ShellCompDirective) {
		return e.completeContexts(cmd, nil, s)
	})
	root.SetFlagErrorFunc(suggestFlag)

	for _, v := range []verb{
		&serveCmd{env: e}, &pushCmd{env: e}, &listCmd{env: e}, &showCmd{env: e},
		&promoteCmd{env: e}, &rollbackCmd{env: e}, &historyCmd{env: e},
		&trainCmd{env: e}, &genDataCmd{env: e}, &cardCmd{env: e}, &gcCmd{env: e},
		&canaryCmd{env: e}, &blendCmd{env: e}, &statusCmd{env: e}, &policyCmd{env: e}, &rolloutCmd{env: e},
		&tokenCmd{env: e}, &backupCmd{env: e}, &migrateCmd{env: e}, &evalCmd{env: e}, &exportCmd{env: e}, &configCmd{env: e}, &versionCmd{env: e},
	} {
		root.AddCommand(v.command())
	}
	root.AddCommand(&cobra.Command{
		// Hidden: `modelctl serve` runs its own binary so to verify a push in a
		// child process under limits; the request comes on stdin.
		Use: loader.VerifyCommand, Hidden: true, DisableFlagParsing: true, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return loader.ServeVerify(os.Stdin, e.stdout) },
	})
	return root
}

// verb is one modelctl verb: its cobra.Command, whose RunE calls its Run.
type verb interface {
	command() *cobra.Command
	Run(ctx context.Context, args []string) error
}

// runs adapts a verb's Run to cobra.
func runs(v verb) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return v.Run(cmd.Context(), args)
	}
}

type versionCmd struct{ *env }

func (c *versionCmd) command() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "print modelctl's version", Args: cobra.NoArgs, RunE: runs(c)}
}

func (c *versionCmd) Run(context.Context, []string) error {
	return c.print(map[string]string{"version": Version}, func(w io.Writer) {
		fmt.Fprintln(w, "modelctl", Version)
	})
}

// needs checks a verb's positional arguments: from lo to hi of them, else the
// error says what the verb needs.
func needs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("%s needs %s (see `%s --help`)", cmd.Name(), what, cmd.CommandPath())
		}
		return nil
	}
}

// group is the Args and RunE of a verb made of subcommands (token, config):
// without one it prints its help; an unknown one gets the nearest.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if near := cmd.SuggestionsFor(args[0]); len(near) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(near, "\n\t")
		}
		return errors.New(msg)
	}
	if cmd.RunE == nil {
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	return cmd
}

// suggestFlag adds the nearest flag names to an unknown flag's error.
func suggestFlag(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var name string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		name = strings.TrimPrefix(msg, "unknown flag: --")
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'x' in -xyz": a long flag with one dash.
		if _, after, ok := strings.Cut(msg, " in -"); ok {
			name = after
		}
	default:
		return fmt.Errorf("%w\nsee `%s --help`", err, cmd.CommandPath())
	}
	name, _, _ = strings.Cut(name, "=")
	var near []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := distance(name, f.Name); d <= 2 || (len(name) > 2 && strings.HasPrefix(f.Name, name)) {
			near = append(near, "--"+f.Name)
		}
	})
	if len(near) == 0 {
		return fmt.Errorf("%w\nsee `%s --help`", err, cmd.CommandPath())
	}
	return fmt.Errorf("%w\n\nDid you mean this?\n\t%s", err, strings.Join(near, "\n\t"))
}

// distance is the Levenshtein distance of a and b, ignoring case.
func distance(a, b string) int {
	ra, rb := []rune(strings.ToLower(a)), []rune(strings.ToLower(b))
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// flags returns a standard-library flag set whose errors go to stderr with
// the verb's usage (serve parses its settings with one).
func (e *env) flags(c interface{ Usage() string }, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: modelctl %s\n", c.Usage())
		fs.PrintDefaults()
	}
	return fs
}
