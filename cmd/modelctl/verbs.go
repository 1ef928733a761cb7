package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
)

// clientFlags are shared by every verb that talks to a control plane.
type clientFlags struct {
	server string
	output string
	token  string
}

func (e *env) clientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{server: e.getenv("MODELCTL_SERVER"), output: "table", token: strings.TrimSpace(e.getenv("MODELCTL_TOKEN"))}
	if cf.server == "" {
		cf.server = "http://127.0.0.1:8080"
	}
	fs.StringVar(&cf.server, "server", cf.server, "control plane URL (env MODELCTL_SERVER)")
	fs.StringVar(&cf.output, "o", cf.output, "output: table or json")
	return cf
}

func (cf *clientFlags) client() (*client.Client, error) {
	if cf.output != "table" && cf.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", cf.output)
	}
	if err := client.CheckBaseURL(cf.server); err != nil {
		return nil, fmt.Errorf("--server %w", err)
	}
	c := client.New(cf.server)
	c.Token = cf.token
	return c, nil
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) table(fn func(w io.Writer)) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fn(tw)
	tw.Flush()
}

// printList prints items: with -o json as a JSON list (empty, never null);
// else as a table of header and one row per item, or, when there are none,
// the empty message.
func printList[T any](e *env, output string, items []T, empty, header string, row func(T) string) error {
	if output == "json" {
		if items == nil {
			items = []T{}
		}
		return e.printJSON(items)
	}
	if len(items) == 0 {
		fmt.Fprintln(e.stdout, empty)
		return nil
	}
	e.table(func(w io.Writer) {
		fmt.Fprintln(w, header)
		for _, it := range items {
			fmt.Fprintln(w, row(it))
		}
	})
	return nil
}

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

// push

type pushCmd struct{ *env }

func (c *pushCmd) Usage() string {
	return "push FILE.onnx --model NAME [--card card.json]   upload a new version"
}

func (c *pushCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "push")
	cf := c.clientFlags(fs)
	model := fs.String("model", "", "model name (required)")
	cardPath := fs.String("card", "", "model card JSON (default: card.json beside the file, if there)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *model == "" {
		fs.Usage()
		return fmt.Errorf("push needs one FILE and --model")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var card []byte
	switch {
	case *cardPath != "":
		if card, err = os.ReadFile(*cardPath); err != nil {
			return fmt.Errorf("card: %w", err)
		}
	default:
		beside := strings.TrimSuffix(pos[0], ".onnx") + ".card.json"
		for _, p := range []string{beside, dirOf(pos[0]) + "card.json"} {
			if b, err := os.ReadFile(p); err == nil {
				card = b
				fmt.Fprintf(c.stderr, "using card %s\n", p)
				break
			}
		}
		if card == nil {
			// Allowed, but the version loses what a card gives: say so.
			fmt.Fprintf(c.stderr, "no card (%s or %scard.json): the version is pushed without golden inputs to check on every load and without a reference for drift (`modelctl card` makes one)\n", beside, dirOf(pos[0]))
		}
	}
	opts := client.PushOptions{Model: *model, ArtifactPath: pos[0], Card: card}
	if isTerminal(c.stderr) {
		opts.Progress = progressBar(c.stderr, pos[0])
	}
	res, err := cl.Push(ctx, opts)
	if opts.Progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", pos[0], err)
	}
	if cf.output == "json" {
		return c.printJSON(res)
	}
	if res.Created {
		fmt.Fprintf(c.stdout, "pushed %s v%d (sha256 %s, %d bytes)\n", res.Version.Model, res.Version.Number, res.Version.Digest, res.Version.Size)
	} else {
		fmt.Fprintf(c.stdout, "already pushed as %s v%d (sha256 %s)\n", res.Version.Model, res.Version.Number, res.Version.Digest)
	}
	return nil
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
		fmt.Fprintf(w, "\r%s [%s%s] %5.1f%% %s/%s", name, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, bytesH(sent), bytesH(total))
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

func (c *listCmd) Usage() string { return "list   models with their production version" }

func (c *listCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "list")
	cf := c.clientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ms, err := cl.Models(ctx)
	if err != nil {
		return err
	}
	return printList(c.env, cf.output, ms, "no models yet: push one with `modelctl push FILE.onnx --model NAME`",
		"MODEL\tPRODUCTION\tCANARY\tBLEND\tLATEST\tREVISION\tSIGNATURE",
		func(m registry.Model) string {
			return fmt.Sprintf("%s\t%s\t%s\t%g\t%s\t%d\t%s", m.Name, orDash(m.Production), canaryString(m.Candidate), m.BlendWeight(), orDash(m.Latest), m.Revision, m.Signature)
		})
}

// show

type showCmd struct{ *env }

func (c *showCmd) Usage() string {
	return "show MODEL [VERSION]   a model's versions, or one version with its card"
}

func (c *showCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "show")
	cf := c.clientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return fmt.Errorf("show needs MODEL and optionally VERSION")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	if len(pos) == 2 {
		n, err := versionArg(pos[1])
		if err != nil {
			return err
		}
		v, err := cl.Version(ctx, pos[0], n)
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return c.printJSON(v)
		}
		c.table(func(w io.Writer) {
			fmt.Fprintf(w, "model\t%s\nversion\tv%d\nsha256\t%s\nsize\t%s\ncreated\t%s\nby\t%s\n", v.Model, v.Number, v.Digest, bytesH(v.Size), ago(v.CreatedAt), v.Actor)
		})
		if len(v.Card) > 0 {
			fmt.Fprintln(c.stdout, "card:")
			var pretty any
			if json.Unmarshal(v.Card, &pretty) == nil {
				summarizeCard(c.stdout, pretty)
			}
		}
		return nil
	}
	m, err := cl.Model(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return c.printJSON(m)
	}
	fmt.Fprintf(c.stdout, "%s  production %s  canary %s  blend %g  revision %d\nsignature: %s\n\n", m.Name, orDash(m.Production), canaryString(m.Candidate), m.BlendWeight(), m.Revision, m.Signature)
	c.table(func(w io.Writer) {
		fmt.Fprintln(w, "VERSION\tSHA256\tSIZE\tCREATED\tBY\tALIAS")
		for _, v := range m.Versions {
			alias := ""
			if v.Number == m.Production {
				alias = "production"
			} else if m.Candidate != nil && v.Number == m.Candidate.Version {
				alias = "candidate"
			}
			fmt.Fprintf(w, "v%d\t%s\t%s\t%s\t%s\t%s\n", v.Number, v.Digest[:12], bytesH(v.Size), ago(v.CreatedAt), v.Actor, alias)
		}
	})
	return nil
}

// summarizeCard prints the card's top-level fields, eliding long arrays.
func summarizeCard(w io.Writer, card any) {
	m, ok := card.(map[string]any)
	if !ok {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := m[k].(type) {
		case []any:
			fmt.Fprintf(w, "  %s: %d entries\n", k, len(v))
		case map[string]any:
			b, _ := json.Marshal(v)
			s := string(b)
			if len(s) > 160 {
				s = s[:160] + "…"
			}
			fmt.Fprintf(w, "  %s: %s\n", k, s)
		default:
			fmt.Fprintf(w, "  %s: %v\n", k, v)
		}
	}
}

// promote and rollback

type promoteCmd struct{ *env }

func (c *promoteCmd) Usage() string {
	return "promote MODEL VERSION [--expect-revision N] [--reason TEXT] [--force]   point production at VERSION"
}

func (c *promoteCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "promote")
	cf := c.clientFlags(fs)
	expect := fs.Uint64("expect-revision", 0, "refuse unless the model is at this revision")
	reason := fs.String("reason", "", "why, recorded in the history")
	force := fs.Bool("force", false, "promote a version the monitor rejected")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("promote needs MODEL and VERSION")
	}
	n, err := versionArg(pos[1])
	if err != nil {
		return err
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ev, err := cl.Promote(ctx, pos[0], api.AliasBody{Version: n, ExpectRevision: *expect, Reason: *reason, Force: *force})
	if err != nil {
		return err
	}
	return c.printEvent(cf, ev)
}

func (e *env) printEvent(cf *clientFlags, ev *registry.Event) error {
	if cf.output == "json" {
		return e.printJSON(ev)
	}
	fmt.Fprintf(e.stdout, "%s %s: production %s → %s (revision %d)\n", ev.Model, strings.ReplaceAll(ev.Kind, "_", " "), orDash(ev.From), orDash(ev.To), ev.Revision)
	return nil
}

type rollbackCmd struct{ *env }

func (c *rollbackCmd) Usage() string {
	return "rollback MODEL [--to VERSION] [--expect-revision N] [--reason TEXT] [--force]   production back to the previous version"
}

func (c *rollbackCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "rollback")
	cf := c.clientFlags(fs)
	to := fs.String("to", "", "version to roll back to (default: the previous production version)")
	expect := fs.Uint64("expect-revision", 0, "refuse unless the model is at this revision")
	reason := fs.String("reason", "", "why, recorded in the history")
	force := fs.Bool("force", false, "with --to: roll back to a version the monitor rejected")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("rollback needs MODEL")
	}
	body := api.AliasBody{ExpectRevision: *expect, Reason: *reason, Force: *force}
	if *to != "" {
		if body.Version, err = versionArg(*to); err != nil {
			return err
		}
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ev, err := cl.Rollback(ctx, pos[0], body)
	if err != nil {
		return err
	}
	return c.printEvent(cf, ev)
}

// history

type historyCmd struct{ *env }

func (c *historyCmd) Usage() string {
	return "history [MODEL] [--since REV] [--limit N | --last N]   events, oldest first"
}

func (c *historyCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "history")
	cf := c.clientFlags(fs)
	since := fs.Uint64("since", 0, "only events after this revision")
	limit := fs.Int("limit", 1000, "at most this many events, the first after --since (1 to 10000; --since pages on)")
	last := fs.Int("last", 0, "only the latest N events (1 to 10000)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > 10000 {
		return fmt.Errorf("--limit %d: want 1 to 10000 (--since REV pages on)", *limit)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["last"] && (*last < 1 || *last > 10000) {
		return fmt.Errorf("--last %d: want 1 to 10000", *last)
	}
	if set["last"] && set["limit"] {
		return fmt.Errorf("give --limit (the first events after --since) or --last (the latest ones), not both")
	}
	if len(pos) > 1 {
		fs.Usage()
		return fmt.Errorf("history takes at most one MODEL")
	}
	model := ""
	if len(pos) == 1 {
		model = pos[0]
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var evs []registry.Event
	if set["last"] {
		evs, err = cl.LatestEvents(ctx, model, *since, *last)
	} else {
		evs, err = cl.Events(ctx, model, *since, *limit)
	}
	if err != nil {
		return err
	}
	if !set["last"] && len(evs) == *limit {
		// Say when there are more, where it does not get into the output.
		end := evs[len(evs)-1].Revision
		if more, err := cl.Events(ctx, model, end, 1); err == nil && len(more) > 0 {
			fmt.Fprintf(c.stderr, "the first %d events after revision %d; there are more: --since %d pages on, --last N shows the latest\n", *limit, *since, end)
		}
	}
	return printList(c.env, cf.output, evs, "no events",
		"REVISION\tTIME\tMODEL\tEVENT\tFROM\tTO\tACTOR\tREASON",
		func(e registry.Event) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s", e.Revision, ago(e.Time), e.Model, e.Kind, orDash(e.From), orDash(e.To), e.Actor, e.Reason)
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

type gcCmd struct{ *env }

func (c *gcCmd) Usage() string {
	return "gc [--apply] [--grace 24h]   blobs no version references (deleted only with --apply)"
}

func (c *gcCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "gc")
	cf := c.clientFlags(fs)
	apply := fs.Bool("apply", false, "delete the unreferenced blobs (default: only list them)")
	grace := fs.Duration("grace", 24*time.Hour, "keep blobs younger than this (an upload may still be on its way to a version)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gc: unexpected argument %q", fs.Arg(0))
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	res, err := cl.GC(ctx, api.GCBody{Grace: grace.String(), Apply: *apply})
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return c.printJSON(res)
	}
	if len(res.Unreferenced) == 0 {
		fmt.Fprintf(c.stdout, "no unreferenced blobs older than %s (%d younger kept)\n", grace, res.Kept)
		return nil
	}
	var total int64
	c.table(func(w io.Writer) {
		fmt.Fprintln(w, "SHA256\tSIZE\tSTORED")
		for _, b := range res.Unreferenced {
			total += b.Size
			fmt.Fprintf(w, "%s\t%s\t%s\n", b.Digest, bytesH(b.Size), ago(b.ModTime))
		}
	})
	if res.Deleted {
		fmt.Fprintf(c.stdout, "deleted %s, %s\n", blobs(len(res.Unreferenced)), bytesH(total))
	} else {
		fmt.Fprintf(c.stdout, "%s unreferenced, %s; run with --apply to delete them\n", blobs(len(res.Unreferenced)), bytesH(total))
	}
	return nil
}

// canary and blend

type canaryCmd struct{ *env }

func (c *canaryCmd) Usage() string {
	return "canary MODEL VERSION --traffic 10 [--mode ab|shadow] [--reason TEXT] | canary MODEL --clear   set or clear the challenger"
}

func (c *canaryCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "canary")
	cf := c.clientFlags(fs)
	traffic := fs.Float64("traffic", 0, "percentage of traffic for the challenger (ab) or scored in its shadow")
	mode := fs.String("mode", "ab", "ab: the challenger answers its share; shadow: it scores beside the champion, unseen")
	clear := fs.Bool("clear", false, "remove the canary")
	expect := fs.Uint64("expect-revision", 0, "refuse unless the model is at this revision")
	reason := fs.String("reason", "", "why, recorded in the history")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var ev *registry.Event
	switch {
	case *clear && len(pos) == 1:
		ev, err = cl.ClearCanary(ctx, pos[0], *expect, *reason)
	case !*clear && len(pos) == 2:
		n, verr := versionArg(pos[1])
		if verr != nil {
			return verr
		}
		if !(*traffic > 0 && *traffic <= 100) { // NaN too
			return fmt.Errorf("canary needs --traffic, a percentage above 0 and at most 100")
		}
		ev, err = cl.SetCanary(ctx, pos[0], api.CanaryBody{Version: n, Traffic: *traffic, Mode: *mode, ExpectRevision: *expect, Reason: *reason})
	default:
		fs.Usage()
		return fmt.Errorf("canary needs MODEL VERSION --traffic N, or MODEL --clear")
	}
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return c.printJSON(ev)
	}
	if ev.Kind == registry.EventCanaryCleared {
		fmt.Fprintf(c.stdout, "%s canary v%d cleared (revision %d)\n", ev.Model, ev.From, ev.Revision)
	} else {
		fmt.Fprintf(c.stdout, "%s canary → v%d: %s (revision %d)\n", ev.Model, ev.To, ev.Reason, ev.Revision)
	}
	return nil
}

type blendCmd struct{ *env }

func (c *blendCmd) Usage() string {
	return "blend MODEL W [--reason TEXT]   score = W·model + (1−W)·rules, W from 0 to 1"
}

func (c *blendCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "blend")
	cf := c.clientFlags(fs)
	expect := fs.Uint64("expect-revision", 0, "refuse unless the model is at this revision")
	reason := fs.String("reason", "", "why, recorded in the history")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("blend needs MODEL and W")
	}
	w, err := strconv.ParseFloat(pos[1], 64)
	if err != nil || math.IsNaN(w) || math.IsInf(w, 0) {
		return fmt.Errorf("blend weight %q: want a number from 0 to 1", pos[1])
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	ev, err := cl.SetBlend(ctx, pos[0], api.BlendBody{Weight: &w, ExpectRevision: *expect, Reason: *reason})
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return c.printJSON(ev)
	}
	fmt.Fprintf(c.stdout, "%s blend: %s (revision %d)\n", ev.Model, ev.Reason, ev.Revision)
	return nil
}

func canaryString(c *registry.Canary) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("v%d %s %g%%", c.Version, c.Mode, c.Traffic)
}

// token

type tokenCmd struct{ *env }

func (c *tokenCmd) Usage() string {
	return "token create --name NAME --role admin|viewer|scorer [--node NODE] | token list | token revoke ID | token new   manage access (admin); `new` prints a fresh secret for MODELOPS_ADMIN_TOKEN, no control plane needed"
}

func (c *tokenCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "token")
	cf := c.clientFlags(fs)
	name := fs.String("name", "", "who or what the token is for (create)")
	role := fs.String("role", "", "admin, viewer or scorer (create)")
	node := fs.String("node", "", "the scorer node the token reports for (create, role scorer; else its first report binds it)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 1 && pos[0] == "new" {
		// No control plane involved: the secret a control plane is first started
		// with (MODELOPS_ADMIN_TOKEN), stored only once it starts.
		fmt.Fprintln(c.stdout, registry.NewTokenSecret())
		return nil
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 1 && pos[0] == "create":
		if *name == "" || *role == "" {
			return fmt.Errorf("token create needs --name and --role")
		}
		t, err := cl.CreateTokenFor(ctx, api.TokenBody{Name: *name, Role: *role, Node: *node})
		if err != nil {
			return err
		}
		if cf.output == "json" {
			return c.printJSON(t)
		}
		fmt.Fprintf(c.stderr, "token %s for %s (role %s); the secret is shown only now:\n", t.ID, t.Name, t.Role)
		fmt.Fprintln(c.stdout, t.Secret)
		return nil
	case len(pos) == 1 && pos[0] == "list":
		ts, err := cl.Tokens(ctx)
		if err != nil {
			return err
		}
		return printList(c.env, cf.output, ts, "no tokens", "ID\tNAME\tROLE\tNODE\tCREATED\tREVOKED",
			func(t registry.Token) string {
				node := t.Node
				if node == "" {
					node = "-"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%v", t.ID, t.Name, t.Role, node, ago(t.CreatedAt), t.Revoked)
			})
	case len(pos) == 2 && pos[0] == "revoke":
		if err := cl.RevokeToken(ctx, pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "token %s revoked\n", pos[1])
		return nil
	}
	fs.Usage()
	return fmt.Errorf("token needs create, list, revoke ID or new")
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

type backupCmd struct{ *env }

func (c *backupCmd) Usage() string {
	return "backup --out FILE [--force]   a consistent copy of the registry's bbolt file, taken while it runs (admin)"
}

func (c *backupCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "backup")
	cf := c.clientFlags(fs)
	out := fs.String("out", "", "file to write (required)")
	force := fs.Bool("force", false, "replace FILE if it exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("backup needs --out FILE")
	}
	// An earlier backup is often the only copy there is: replace it only when
	// asked to, and say so before asking the control plane for anything.
	if _, err := os.Lstat(*out); err == nil && !*force {
		return fmt.Errorf("backup: %s exists; choose another file, or add --force to replace it", *out)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	tmp := *out + ".tmp"
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
	if err := placeBackup(tmp, *out, *force); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(c.stdout, "wrote %s (%s), consistency checked\n", *out, bytesH(n))
	return nil
}
