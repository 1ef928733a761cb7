// Command modelctl is the operator's tool: `modelctl serve` runs the control plane,
// and every other verb talks to a control plane over HTTP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/modelops/modelops/internal/loader"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

// command is one modelctl verb.
type command interface {
	Run(ctx context.Context, args []string) error
	Usage() string
}

var commands = map[string]func(*env) command{
	"serve":    func(e *env) command { return &serveCmd{env: e} },
	"push":     func(e *env) command { return &pushCmd{env: e} },
	"list":     func(e *env) command { return &listCmd{env: e} },
	"show":     func(e *env) command { return &showCmd{env: e} },
	"promote":  func(e *env) command { return &promoteCmd{env: e} },
	"rollback": func(e *env) command { return &rollbackCmd{env: e} },
	"history":  func(e *env) command { return &historyCmd{env: e} },
	"train":    func(e *env) command { return &trainCmd{env: e} },
	"gen-data": func(e *env) command { return &genDataCmd{env: e} },
	"card":     func(e *env) command { return &cardCmd{env: e} },
	"gc":       func(e *env) command { return &gcCmd{env: e} },
	"canary":   func(e *env) command { return &canaryCmd{env: e} },
	"blend":    func(e *env) command { return &blendCmd{env: e} },
	"status":   func(e *env) command { return &statusCmd{env: e} },
	"policy":   func(e *env) command { return &policyCmd{env: e} },
	"token":    func(e *env) command { return &tokenCmd{env: e} },
	"backup":   func(e *env) command { return &backupCmd{env: e} },
	"migrate":  func(e *env) command { return &migrateCmd{env: e} },
}

// env carries what every verb shares: output streams and environment.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if err := e.run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "modelctl:", err)
		}
		os.Exit(1)
	}
}

func (e *env) run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		e.usage()
		if len(args) == 0 {
			return flag.ErrHelp
		}
		return nil
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(e.stdout, "modelctl", Version)
		return nil
	}
	if args[0] == loader.VerifyCommand {
		// Hidden: `modelctl serve` runs its own binary so to verify a push in a
		// child process under limits.
		return loader.ServeVerify(os.Stdin, e.stdout)
	}
	args = verbFirst(args)
	if strings.HasPrefix(args[0], "-") {
		e.usage()
		return fmt.Errorf("%q: a command must come first (only --server URL and -o FORMAT may come before it)", args[0])
	}
	mk, ok := commands[args[0]]
	if !ok {
		e.usage()
		return fmt.Errorf("unknown command %q", args[0])
	}
	err := mk(e).Run(ctx, args[1:])
	if errors.Is(err, syscall.ECONNREFUSED) {
		// The commonest first stumble: nothing runs there yet, or elsewhere.
		err = fmt.Errorf("%w\n(nothing listens there: start one with `modelctl serve` or `make run`, or point --server or MODELCTL_SERVER at yours)", err)
	}
	return err
}

// verbFirst moves the client flags written before the verb (`modelctl --server
// URL list`, `modelctl -o json status`) to after it, where every verb parses
// them.
func verbFirst(args []string) []string {
	var lead []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, _, inline := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if name != "server" && name != "o" {
			break
		}
		n := 2 // the flag and its value
		if inline {
			n = 1
		}
		n = min(n, len(args))
		lead, args = append(lead, args[:n]...), args[n:]
	}
	return append(append([]string(nil), args...), lead...)
}

func (e *env) usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("modelctl: a control plane for ONNX models with hot reload\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s\n", commands[n](e).Usage())
	}
	b.WriteString("\nClient commands take --server (env MODELCTL_SERVER, default http://127.0.0.1:8080) and -o table|json,\nand send the token in MODELCTL_TOKEN.\n")
	fmt.Fprint(e.stderr, b.String())
}

// flags returns a flag set whose errors go to stderr with the verb's usage.
func (e *env) flags(c command, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: modelctl %s\n", c.Usage())
		fs.PrintDefaults()
	}
	return fs
}

// parseInterleaved parses flags that may come before or after positional
// arguments (`modelctl push model.onnx --model m`), returning the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
