package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func versionArg(s string) (int, error) {
	s = strings.TrimPrefix(s, "v")
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("version %q: want a positive number such as 3 or v3", s)
	}
	return n, nil
}

func orDash(n int) string {
	if n == 0 {
		return "-"
	}
	return "v" + strconv.Itoa(n)
}

// completeModels offers the control plane's model names for a verb's first
// argument (a shell asks `modelctl __complete promote ""`).
func (e *env) completeModels(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cl, err := e.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ms, err := cl.Models(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// push

type pushCmd struct {
	*env
	model, card, reason string
}

func (c *pushCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "push FILE.onnx --model NAME [--card card.json] [--reason TEXT]",
		Short: "upload a new version",
		Args:  needs(1, 1, "one FILE and --model"),
		RunE:  runs(c),
	}
	cmd.Flags().StringVar(&c.model, "model", "", "model name (required)")
	cmd.Flags().StringVar(&c.card, "card", "", "model card JSON (default: card.json beside the file, if there)")
	cmd.Flags().StringVar(&c.reason, "reason", "", "why, kept with the version and in the history")
	cmd.MarkFlagRequired("model")
	return cmd
}

func (c *pushCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var card []byte
	switch {
	case c.card != "":
		if card, err = os.ReadFile(c.card); err != nil {
			return fmt.Errorf("card: %w", err)
		}
	default:
		beside := strings.TrimSuffix(args[0], ".onnx") + ".card.json"
		for _, p := range []string{beside, dirOf(args[0]) + "card.json"} {
			if b, err := os.ReadFile(p); err == nil {
				card = b
				fmt.Fprintf(c.stderr, "using card %s\n", p)
				break
			}
		}
		if card == nil {
			// Allowed, but the version loses what a card gives: say so.
			fmt.Fprintf(c.stderr, "no card (%s or %scard.json): the version is pushed without golden inputs to check on every load and without a reference for drift (`modelctl card` makes one)\n", beside, dirOf(args[0]))
		}
	}
	opts := client.PushOptions{Model: c.model, ArtifactPath: args[0], Card: card, Reason: c.reason}
	if isTerminal(c.stderr) {
		opts.Progress = progressBar(c.stderr, args[0])
	}
	res, err := cl.Push(ctx, opts)
	if opts.Progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", args[0], err)
	}
	return c.print(res, func(w io.Writer) {
		v := res.Version
		if res.Created {
			fmt.Fprintf(w, "pushed %s v%d (sha256 %s, %d bytes)\n", esc(v.Model), v.Number, esc(v.Digest), v.Size)
		} else {
			fmt.Fprintf(w, "already pushed as %s v%d (sha256 %s)\n", esc(v.Model), v.Number, esc(v.Digest))
		}
	})
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i+1]
	}
	return ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar redraws one line at most ten times a second.
func progressBar(w io.Writer, name string) func(sent, total int64) {
	var last time.Time
	return func(sent, total int64) {
		if sent < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(sent) / float64(total)
		}
		const width = 30
		fill := int(pct / 100 * width)
		fmt.Fprintf(w, "\r%s [%s%s] %5.1f%% %s/%s", esc(name), strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, bytesH(sent), bytesH(total))
	}
}

func bytesH(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// list

type listCmd struct{ *env }

func (c *listCmd) command() *cobra.Command {
	return &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "models with their production version", Args: cobra.NoArgs, RunE: runs(c)}
}

func (c *listCmd) Run(ctx context.Context, _ []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ms, err := cl.Models(ctx)
	if err != nil {
		return err
	}
	return printList(c.env, ms, "no models yet: push one with `modelctl push FILE.onnx --model NAME`",
		[]string{"MODEL", "PRODUCTION", "CANARY", "BLEND", "LATEST", "REVISION", "SIGNATURE"},
		func(m registry.Model) []any {
			return []any{m.Name, orDash(m.Production), canaryString(m.Candidate), m.BlendWeight(), orDash(m.Latest), m.Revision, m.Signature}
		})
}

// promote and rollback

type aliasFlags struct {
	expect uint64
	reason string
	force  bool
}

func (f *aliasFlags) add(cmd *cobra.Command, force string) {
	cmd.Flags().Uint64Var(&f.expect, "expect-revision", 0, "refuse unless the model is at this revision")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, recorded in the history")
	if force != "" {
		cmd.Flags().BoolVar(&f.force, "force", false, force)
	}
}

type promoteCmd struct {
	*env
	aliasFlags
}

func (c *promoteCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "promote MODEL VERSION [--expect-revision N] [--reason TEXT] [--force]",
		Short: "point production at VERSION (the version already there: unchanged, exit 0)",
		Args:  needs(2, 2, "MODEL and VERSION"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	c.add(cmd, "promote a version the monitor rejected")
	return cmd
}

func (c *promoteCmd) Run(ctx context.Context, args []string) error {
	n, err := versionArg(args[1])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ev, err := cl.Promote(ctx, args[0], wire.AliasBody{Version: n, ExpectRevision: c.expect, Reason: c.reason, Force: c.force})
	if err != nil {
		return err
	}
	return c.printEvent(ev)
}

// printEvent prints the event an alias change made, or says it was unchanged.
func (e *env) printEvent(ev *registry.Event) error {
	return e.print(ev, func(w io.Writer) {
		if ev.Unchanged {
			fmt.Fprintf(w, "%s unchanged: production is %s (revision %d)\n", esc(ev.Model), orDash(ev.To), ev.Revision)
			return
		}
		fmt.Fprintf(w, "%s %s: production %s → %s (revision %d)\n", esc(ev.Model), esc(strings.ReplaceAll(ev.Kind, "_", " ")), orDash(ev.From), orDash(ev.To), ev.Revision)
	})
}

type rollbackCmd struct {
	*env
	aliasFlags
	to string
}

func (c *rollbackCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollback MODEL [--to VERSION] [--expect-revision N] [--reason TEXT] [--force]",
		Short: "production back to the previous version",
		Args:  needs(1, 1, "MODEL"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().StringVar(&c.to, "to", "", "version to roll back to (default: the previous production version)")
	c.add(cmd, "with --to: roll back to a version the monitor rejected")
	return cmd
}

func (c *rollbackCmd) Run(ctx context.Context, args []string) error {
	body := wire.AliasBody{ExpectRevision: c.expect, Reason: c.reason, Force: c.force}
	if c.to != "" {
		var err error
		if body.Version, err = versionArg(c.to); err != nil {
			return err
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ev, err := cl.Rollback(ctx, args[0], body)
	if err != nil {
		return err
	}
	return c.printEvent(ev)
}

// history

type historyCmd struct {
	*env
	since       uint64
	limit, last int
}

func (c *historyCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history [MODEL] [--since REV] [--limit N | --last N]",
		Short: "events, oldest first",
		Args:  needs(0, 1, "at most one MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("last") && cmd.Flags().Changed("limit") {
				return fmt.Errorf("give --limit (the first events after --since) or --last (the latest ones), not both")
			}
			if cmd.Flags().Changed("last") && (c.last < 1 || c.last > 10000) {
				return fmt.Errorf("--last %d: want 1 to 10000", c.last)
			}
			return c.Run(cmd.Context(), args)
		},
		ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().Uint64Var(&c.since, "since", 0, "only events after this revision")
	cmd.Flags().IntVar(&c.limit, "limit", 1000, "at most this many events, the first after --since (1 to 10000; --since pages on)")
	cmd.Flags().IntVar(&c.last, "last", 0, "only the latest N events (1 to 10000)")
	return cmd
}

// Run lists events; c.last > 0 asks for the latest ones.
func (c *historyCmd) Run(ctx context.Context, args []string) error {
	if c.limit < 1 || c.limit > 10000 {
		return fmt.Errorf("--limit %d: want 1 to 10000 (--since REV pages on)", c.limit)
	}
	model := ""
	if len(args) == 1 {
		model = args[0]
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var evs []registry.Event
	if c.last > 0 {
		evs, err = cl.LatestEvents(ctx, model, c.since, c.last)
	} else {
		evs, err = cl.Events(ctx, model, c.since, c.limit)
	}
	if err != nil {
		return err
	}
	if c.last == 0 && len(evs) == c.limit {
		// Say when there are more, where it does not get into the output.
		end := evs[len(evs)-1].Revision
		if more, err := cl.Events(ctx, model, end, 1); err == nil && len(more) > 0 {
			fmt.Fprintf(c.stderr, "the first %d events after revision %d; there are more: --since %d pages on, --last N shows the latest\n", c.limit, c.since, end)
		}
	}
	return printList(c.env, evs, "no events",
		[]string{"REVISION", "TIME", "MODEL", "EVENT", "FROM", "TO", "ACTOR", "REASON"},
		func(e registry.Event) []any {
			return []any{e.Revision, ago(e.Time), e.Model, e.Kind, orDash(e.From), orDash(e.To), e.Actor, e.Reason}
		})
}

// gc

// blobs counts blobs in words: "1 blob", "2 blobs".
func blobs(n int) string {
	if n == 1 {
		return "1 blob"
	}
	return fmt.Sprintf("%d blobs", n)
}

type gcCmd struct {
	*env
	apply bool
	grace time.Duration
}

func (c *gcCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc [--apply] [--grace 24h]",
		Short: "blobs no version references (deleted only with --apply)",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	cmd.Flags().BoolVar(&c.apply, "apply", false, "delete the unreferenced blobs (default: only list them)")
	cmd.Flags().DurationVar(&c.grace, "grace", 24*time.Hour, "keep blobs younger than this (an upload may still be on its way to a version)")
	return cmd
}

func (c *gcCmd) Run(ctx context.Context, _ []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	res, err := cl.GC(ctx, wire.GCBody{Grace: c.grace.String(), Apply: c.apply})
	if err != nil {
		return err
	}
	return c.print(res, func(w io.Writer) {
		if len(res.Unreferenced) == 0 {
			fmt.Fprintf(w, "no unreferenced blobs older than %s (%d younger kept)\n", c.grace, res.Kept)
			return
		}
		var total int64
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "SHA256\tSIZE\tSTORED")
			for _, b := range res.Unreferenced {
				total += b.Size
				fmt.Fprintln(tw, cells(b.Digest, bytesH(b.Size), ago(b.ModTime)))
			}
		})
		if res.Deleted {
			fmt.Fprintf(w, "deleted %s, %s\n", blobs(len(res.Unreferenced)), bytesH(total))
		} else {
			fmt.Fprintf(w, "%s unreferenced, %s; run with --apply to delete them\n", blobs(len(res.Unreferenced)), bytesH(total))
		}
	})
}

// canary and blend

type canaryCmd struct {
	*env
	traffic      float64
	mode, reason string
	clear        bool
	expect       uint64
}

func (c *canaryCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "canary MODEL VERSION --traffic 10 [--mode ab|shadow] [--reason TEXT] | canary MODEL --clear",
		Short: "set or clear the challenger (the same setting, or clearing none: unchanged, exit 0)",
		Args:  needs(1, 2, "MODEL VERSION --traffic N, or MODEL --clear"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().Float64Var(&c.traffic, "traffic", 0, "percentage of traffic for the challenger (ab) or scored in its shadow")
	cmd.Flags().StringVar(&c.mode, "mode", "ab", "ab: the challenger answers its share; shadow: it scores beside the champion, unseen")
	cmd.Flags().BoolVar(&c.clear, "clear", false, "remove the canary")
	cmd.Flags().Uint64Var(&c.expect, "expect-revision", 0, "refuse unless the model is at this revision")
	cmd.Flags().StringVar(&c.reason, "reason", "", "why, recorded in the history")
	return cmd
}

func (c *canaryCmd) Run(ctx context.Context, args []string) error {
	var ev *registry.Event
	switch {
	case c.clear && len(args) == 1:
		cl, err := c.client()
		if err != nil {
			return err
		}
		ev, err = cl.ClearCanary(ctx, args[0], c.expect, c.reason)
		if err != nil {
			return err
		}
	case !c.clear && len(args) == 2:
		n, err := versionArg(args[1])
		if err != nil {
			return err
		}
		if !(c.traffic > 0 && c.traffic <= 100) { // NaN too
			return fmt.Errorf("canary needs --traffic, a percentage above 0 and at most 100")
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		ev, err = cl.SetCanary(ctx, args[0], wire.CanaryBody{Version: n, Traffic: c.traffic, Mode: c.mode, ExpectRevision: c.expect, Reason: c.reason})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("canary needs MODEL VERSION --traffic N, or MODEL --clear")
	}
	return c.print(ev, func(w io.Writer) {
		switch {
		case ev.Unchanged && ev.Kind == registry.EventCanaryCleared:
			fmt.Fprintf(w, "%s unchanged: no canary (revision %d)\n", esc(ev.Model), ev.Revision)
		case ev.Unchanged:
			fmt.Fprintf(w, "%s unchanged: canary v%d already has that share and mode (revision %d)\n", esc(ev.Model), ev.To, ev.Revision)
		case ev.Kind == registry.EventCanaryCleared:
			fmt.Fprintf(w, "%s canary v%d cleared (revision %d)\n", esc(ev.Model), ev.From, ev.Revision)
		default:
			fmt.Fprintf(w, "%s canary → v%d: %s (revision %d)\n", esc(ev.Model), ev.To, esc(ev.Reason), ev.Revision)
		}
	})
}

type blendCmd struct {
	*env
	expect uint64
	reason string
}

func (c *blendCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blend MODEL W [--reason TEXT]",
		Short: "score = W·model + (1−W)·rules, W from 0 to 1 (the same W: unchanged, exit 0)",
		Args:  needs(2, 2, "MODEL and W"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().Uint64Var(&c.expect, "expect-revision", 0, "refuse unless the model is at this revision")
	cmd.Flags().StringVar(&c.reason, "reason", "", "why, recorded in the history")
	return cmd
}

func (c *blendCmd) Run(ctx context.Context, args []string) error {
	w, err := strconv.ParseFloat(args[1], 64)
	if err != nil || math.IsNaN(w) || math.IsInf(w, 0) {
		return fmt.Errorf("blend weight %q: want a number from 0 to 1", args[1])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ev, err := cl.SetBlend(ctx, args[0], wire.BlendBody{Weight: &w, ExpectRevision: c.expect, Reason: c.reason})
	if err != nil {
		return err
	}
	return c.print(ev, func(out io.Writer) {
		if ev.Unchanged {
			fmt.Fprintf(out, "%s unchanged: blend is %g (revision %d)\n", esc(ev.Model), w, ev.Revision)
			return
		}
		fmt.Fprintf(out, "%s blend: %s (revision %d)\n", esc(ev.Model), esc(ev.Reason), ev.Revision)
	})
}

func canaryString(c *registry.Canary) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("v%d %s %g%%", c.Version, c.Mode, c.Traffic)
}

// token

type tokenCmd struct{ *env }

func (c *tokenCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "manage access (admin); `token new` prints a fresh secret for MODELOPS_ADMIN_TOKEN",
	}
	create := &tokenCreateCmd{env: c.env}
	cmd.AddCommand(create.command(), (&tokenListCmd{env: c.env}).command(),
		(&tokenRevokeCmd{env: c.env}).command(), (&tokenNewCmd{env: c.env}).command())
	return group(cmd)
}

// Run is never reached: token is its subcommands.
func (c *tokenCmd) Run(context.Context, []string) error { return nil }

type tokenCreateCmd struct {
	*env
	name, role, node string
}

func (c *tokenCreateCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name NAME --role admin|viewer|scorer [--node NODE]",
		Short: "make a token; its secret is printed only now, on stdout",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	cmd.Flags().StringVar(&c.name, "name", "", "who or what the token is for")
	cmd.Flags().StringVar(&c.role, "role", "", "admin, viewer or scorer")
	cmd.Flags().StringVar(&c.node, "node", "", "the scorer node the token reports for (role scorer; else its first report binds it)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("role")
	cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "viewer", "scorer"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (c *tokenCreateCmd) Run(ctx context.Context, _ []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	t, err := cl.CreateTokenFor(ctx, wire.TokenBody{Name: c.name, Role: c.role, Node: c.node})
	if err != nil {
		return err
	}
	return c.print(t, func(w io.Writer) {
		fmt.Fprintf(c.stderr, "token %s for %s (role %s); the secret is shown only now:\n", esc(t.ID), esc(t.Name), esc(t.Role))
		fmt.Fprintln(w, esc(t.Secret))
	})
}

type tokenListCmd struct{ *env }

func (c *tokenListCmd) command() *cobra.Command {
	return &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "the tokens, without their secrets", Args: cobra.NoArgs, RunE: runs(c)}
}

func (c *tokenListCmd) Run(ctx context.Context, _ []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ts, err := cl.Tokens(ctx)
	if err != nil {
		return err
	}
	return printList(c.env, ts, "no tokens", []string{"ID", "NAME", "ROLE", "NODE", "CREATED", "REVOKED"},
		func(t registry.Token) []any {
			node := t.Node
			if node == "" {
				node = "-"
			}
			return []any{t.ID, t.Name, t.Role, node, ago(t.CreatedAt), t.Revoked}
		})
}

type tokenRevokeCmd struct{ *env }

func (c *tokenRevokeCmd) command() *cobra.Command {
	return &cobra.Command{Use: "revoke ID", Short: "revoke a token (its secret stops working at once)", Args: needs(1, 1, "the token's ID"), RunE: runs(c)}
}

func (c *tokenRevokeCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.RevokeToken(ctx, args[0]); err != nil {
		return err
	}
	return c.print(map[string]any{"id": args[0], "revoked": true}, func(w io.Writer) {
		fmt.Fprintf(w, "token %s revoked\n", esc(args[0]))
	})
}

type tokenNewCmd struct{ *env }

func (c *tokenNewCmd) command() *cobra.Command {
	return &cobra.Command{
		Use:   "new",
		Short: "print a fresh secret for MODELOPS_ADMIN_TOKEN (no control plane needed)",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
}

// Run involves no control plane: the secret a control plane is first started
// with (MODELOPS_ADMIN_TOKEN), stored only once it starts.
func (c *tokenNewCmd) Run(context.Context, []string) error {
	secret := registry.NewTokenSecret()
	return c.print(map[string]string{"secret": secret}, func(w io.Writer) {
		fmt.Fprintln(w, secret)
	})
}

// backup

// placeBackup moves a finished backup from tmp to out. Without force it never
// replaces a file, not even one made while the backup was taken: a hard link
// fails if out exists (and a rename, where the file system has no links, is
// tried only after one more look).
func placeBackup(tmp, out string, force bool) error {
	if force {
		return os.Rename(tmp, out)
	}
	err := os.Link(tmp, out)
	if err == nil {
		os.Remove(tmp) // the backup is in place; only its second name goes
		return nil
	}
	if !errors.Is(err, os.ErrExist) {
		if _, serr := os.Lstat(out); errors.Is(serr, os.ErrNotExist) {
			return os.Rename(tmp, out)
		}
	}
	return fmt.Errorf("%s appeared while the backup was taken; choose another file, or add --force to replace it", out)
}

type backupCmd struct {
	*env
	out   string
	force bool
}

func (c *backupCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup --out FILE [--force]",
		Short: "a consistent copy of the registry's bbolt file, taken while it runs (admin)",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	cmd.Flags().StringVar(&c.out, "out", "", "file to write (required)")
	cmd.Flags().BoolVar(&c.force, "force", false, "replace FILE if it exists")
	cmd.MarkFlagRequired("out")
	return cmd
}

func (c *backupCmd) Run(ctx context.Context, _ []string) error {
	out := c.out
	if out == "" {
		return fmt.Errorf("backup needs --out FILE")
	}
	// An earlier backup is often the only copy there is: replace it only when
	// asked to, and say so before asking the control plane for anything.
	if _, err := os.Lstat(out); err == nil && !c.force {
		return fmt.Errorf("backup: %s exists; choose another file, or add --force to replace it", out)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := cl.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkBoltFile(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: the copy does not check out: %w", err)
	}
	if err := placeBackup(tmp, out, c.force); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	return c.print(map[string]any{"file": out, "bytes": n, "checked": true, "server": cl.BaseURL}, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s (%s), consistency checked\n", out, bytesH(n))
	})
}
