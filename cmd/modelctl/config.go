package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/modelops/modelops/internal/client"
)

// defaultServer is asked when nothing names a control plane.
const defaultServer = "http://127.0.0.1:8080"

// Config is modelctl's config file: named contexts, each a control plane and
// the file holding the token to send it, and the one in use.
type Config struct {
	CurrentContext string    `json:"current-context,omitempty"`
	Contexts       []Context `json:"contexts"`
}

// Context is one control plane as the CLI reaches it.
type Context struct {
	Name   string `json:"name"`
	Server string `json:"server"`
	// TokenFile holds the token's secret (never the config file itself, which
	// may be shared or shown).
	TokenFile string `json:"token-file,omitempty"`
}

func (cfg *Config) find(name string) *Context {
	for i := range cfg.Contexts {
		if cfg.Contexts[i].Name == name {
			return &cfg.Contexts[i]
		}
	}
	return nil
}

// configPath is $MODELCTL_CONFIG, else $XDG_CONFIG_HOME/modelctl/config.yaml,
// else ~/.config/modelctl/config.yaml; "" when none can be named.
func (e *env) configPath() string {
	if p := e.getenv("MODELCTL_CONFIG"); p != "" {
		return p
	}
	if d := e.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "modelctl", "config.yaml")
	}
	if h := e.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "modelctl", "config.yaml")
	}
	return ""
}

// loadConfig reads the config file; a missing one is an empty config.
func (e *env) loadConfig() (*Config, string, error) {
	path := e.configPath()
	cfg := &Config{}
	if path == "" {
		return cfg, "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return cfg, path, fmt.Errorf("config %s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return &Config{}, path, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, path, nil
}

func saveConfig(path string, cfg *Config) error {
	if path == "" {
		return fmt.Errorf("no place for the config file: set MODELCTL_CONFIG or HOME")
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// client returns a client for the control plane the flags, the environment
// and the config name, in that order.
func (e *env) client() (*client.Client, error) {
	cfg, path, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	name := e.contextName
	if name == "" {
		name = cfg.CurrentContext
	}
	var ctx *Context
	if name != "" {
		if ctx = cfg.find(name); ctx == nil {
			return nil, fmt.Errorf("context %q is not in %s (`modelctl config get-contexts` lists them)", name, path)
		}
	}
	server, from := e.server, "--server"
	switch {
	case server != "":
	case e.getenv("MODELCTL_SERVER") != "":
		server, from = e.getenv("MODELCTL_SERVER"), "MODELCTL_SERVER"
	case ctx != nil && ctx.Server != "":
		server, from = ctx.Server, fmt.Sprintf("context %q's server", ctx.Name)
	default:
		server = defaultServer
	}
	if err := client.CheckBaseURL(server); err != nil {
		return nil, fmt.Errorf("%s %w", from, err)
	}
	c := client.New(server)
	// A token holds no spaces: ones around it came from a file or a paste.
	c.Token = strings.TrimSpace(e.getenv("MODELCTL_TOKEN"))
	// A context's token goes only to the context's own server, never to one
	// a flag or the environment named instead.
	if c.Token == "" && ctx != nil && ctx.TokenFile != "" && slices.Equal(client.New(ctx.Server).URLs(), c.URLs()) {
		b, err := os.ReadFile(ctx.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("context %q: token file: %w", ctx.Name, err)
		}
		c.Token = strings.TrimSpace(string(b))
	}
	return c, nil
}

// config

type configCmd struct{ *env }

func (c *configCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "contexts: named control planes with their token files",
		Long: `Contexts name control planes, each with the file that holds its token, so that
no terminal needs MODELCTL_SERVER and MODELCTL_TOKEN by hand. The file is
$MODELCTL_CONFIG, else ~/.config/modelctl/config.yaml. --server and
MODELCTL_SERVER, MODELCTL_TOKEN still win over the context; a context's token
is sent only to its own server.`,
		RunE: runs(c),
	}
	set := &setContextCmd{env: c.env}
	cmd.AddCommand(set.command(), (&useContextCmd{env: c.env}).command(),
		(&currentContextCmd{env: c.env}).command(), (&getContextsCmd{env: c.env}).command(),
		(&deleteContextCmd{env: c.env}).command())
	return group(cmd)
}

// Run without a subcommand lists the contexts.
func (c *configCmd) Run(ctx context.Context, args []string) error {
	return (&getContextsCmd{env: c.env}).Run(ctx, args)
}

type setContextCmd struct {
	*env
	server, tokenFile string
}

func (c *setContextCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "set-context NAME [--server URL] [--token-file FILE]",
		Short:   "add a context, or change the settings given of one",
		Example: "  modelctl config set-context prod --server https://cp.example:8080 --token-file ~/.modelops/prod.token",
		Args:    needs(1, 1, "a context NAME"),
		RunE:    runs(c),
	}
	cmd.Flags().StringVar(&c.server, "server", "", "the control plane's URL")
	cmd.Flags().StringVar(&c.tokenFile, "token-file", "", "file holding the token's secret (made with `modelctl token create`)")
	return cmd
}

func (c *setContextCmd) Run(_ context.Context, args []string) error {
	name := args[0]
	if strings.TrimSpace(name) == "" || esc(name) != name {
		return fmt.Errorf("context name %q: want printable text", name)
	}
	if c.server != "" {
		if err := client.CheckBaseURL(c.server); err != nil {
			return fmt.Errorf("--server %w", err)
		}
	}
	if c.tokenFile != "" {
		abs, err := filepath.Abs(c.tokenFile)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		c.tokenFile = abs
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	ctx, verb := cfg.find(name), "modified"
	if ctx == nil {
		if c.server == "" {
			return fmt.Errorf("a new context needs --server")
		}
		cfg.Contexts = append(cfg.Contexts, Context{Name: name})
		ctx, verb = &cfg.Contexts[len(cfg.Contexts)-1], "created"
	}
	if c.server != "" {
		ctx.Server = c.server
	}
	if c.tokenFile != "" {
		ctx.TokenFile = c.tokenFile
	}
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	return c.print(ctx, func(w io.Writer) {
		fmt.Fprintf(w, "context %q %s in %s\n", name, verb, path)
	})
}

type useContextCmd struct{ *env }

func (c *useContextCmd) command() *cobra.Command {
	return &cobra.Command{Use: "use-context NAME", Short: "make NAME the current context", Args: needs(1, 1, "a context NAME"), RunE: runs(c),
		ValidArgsFunction: c.completeContexts}
}

func (e *env) completeContexts(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	cfg, _, _ := e.loadConfig()
	var names []string
	for _, ctx := range cfg.Contexts {
		names = append(names, ctx.Name)
	}
	if len(args) > 0 {
		names = nil
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (c *useContextCmd) Run(_ context.Context, args []string) error {
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.find(args[0]) == nil {
		return fmt.Errorf("context %q is not in %s (`modelctl config get-contexts` lists them)", args[0], path)
	}
	cfg.CurrentContext = args[0]
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	return c.print(map[string]string{"current-context": args[0]}, func(w io.Writer) {
		fmt.Fprintf(w, "switched to context %q\n", args[0])
	})
}

type currentContextCmd struct{ *env }

func (c *currentContextCmd) command() *cobra.Command {
	return &cobra.Command{Use: "current-context", Short: "print the current context's name", Args: cobra.NoArgs, RunE: runs(c)}
}

func (c *currentContextCmd) Run(context.Context, []string) error {
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.CurrentContext == "" {
		return fmt.Errorf("no current context in %s (`modelctl config use-context NAME` sets one)", path)
	}
	return c.print(map[string]string{"current-context": cfg.CurrentContext}, func(w io.Writer) {
		fmt.Fprintln(w, esc(cfg.CurrentContext))
	})
}

type getContextsCmd struct{ *env }

func (c *getContextsCmd) command() *cobra.Command {
	return &cobra.Command{Use: "get-contexts", Short: "list the contexts", Args: cobra.NoArgs, RunE: runs(c)}
}

func (c *getContextsCmd) Run(context.Context, []string) error {
	cfg, _, err := c.loadConfig()
	if err != nil {
		return err
	}
	return printList(c.env, cfg.Contexts, "no contexts: `modelctl config set-context NAME --server URL --token-file FILE` adds one",
		[]string{"CURRENT", "NAME", "SERVER", "TOKEN FILE"},
		func(ctx Context) []any {
			cur := ""
			if ctx.Name == cfg.CurrentContext {
				cur = "*"
			}
			return []any{cur, ctx.Name, ctx.Server, orNone(ctx.TokenFile)}
		})
}

type deleteContextCmd struct{ *env }

func (c *deleteContextCmd) command() *cobra.Command {
	return &cobra.Command{Use: "delete-context NAME", Short: "remove a context", Args: needs(1, 1, "a context NAME"), RunE: runs(c),
		ValidArgsFunction: c.completeContexts}
}

func (c *deleteContextCmd) Run(_ context.Context, args []string) error {
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.find(args[0]) == nil {
		return fmt.Errorf("context %q is not in %s", args[0], path)
	}
	kept := cfg.Contexts[:0]
	for _, ctx := range cfg.Contexts {
		if ctx.Name != args[0] {
			kept = append(kept, ctx)
		}
	}
	cfg.Contexts = kept
	if cfg.CurrentContext == args[0] {
		cfg.CurrentContext = ""
	}
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	return c.print(map[string]string{"deleted": args[0]}, func(w io.Writer) {
		fmt.Fprintf(w, "context %q deleted\n", args[0])
	})
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
