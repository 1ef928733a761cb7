package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/trainer"
)

type exportCmd struct {
	*env
	since, until     string
	version          int
	withOutcomesOnly bool
	out              string
	quiet            bool
}

func (c *exportCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export MODEL --out FILE.parquet|.csv|.jsonl",
		Short: "write a model's prediction log, joined with its outcomes, as training data",
		Long: `export streams MODEL's prediction log (the rows scorers sampled, each joined with
the outcome fed back for its request id, if any) from the control plane and writes
it as training data that ` + "`modelctl train --data FILE`" + ` and ` + "`modelctl eval --data FILE`" + ` read:
the model's feature columns and "label" (the outcome), then request_id, version,
time and answer. Rows without an outcome have an empty label; train needs
--with-outcomes-only. FILE.source.json beside it records the model, the time range
and the counts, and train copies it into the new model's card.
--since and --until take an RFC 3339 time or a duration back from now (24h).`,
		Args: needs(1, 1, "MODEL and --out"),
		RunE: runs(c),
	}
	cmd.Flags().StringVar(&c.since, "since", "", "rows answered at or after this time (RFC 3339, or a duration ago: 24h)")
	cmd.Flags().StringVar(&c.until, "until", "", "rows answered before this time (RFC 3339, or a duration ago)")
	cmd.Flags().IntVar(&c.version, "version", 0, "only rows answered by this version")
	cmd.Flags().BoolVar(&c.withOutcomesOnly, "with-outcomes-only", false, "only rows with an outcome (training data)")
	cmd.Flags().StringVar(&c.out, "out", "", "output file: .parquet, .csv or .jsonl (required)")
	cmd.Flags().BoolVarP(&c.quiet, "quiet", "q", false, "no progress on stderr")
	cmd.MarkFlagRequired("out")
	return cmd
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("export: --%s %q: want an RFC 3339 time (2026-12-04T17:00:00Z) or a duration ago (24h)", flag, s)
}

// exportWriter writes rows in one of the three formats.
type exportWriter interface {
	write(r predlog.ExportRow) error
	close() error
}

func (c *exportCmd) Run(ctx context.Context, args []string) error {
	model := args[0]
	now := time.Now()
	since, err := parseWhen("since", c.since, now)
	if err != nil {
		return err
	}
	until, err := parseWhen("until", c.until, now)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return fmt.Errorf("export: --until must be after --since")
	}
	if c.version < 0 {
		return fmt.Errorf("export: --version %d is not a version", c.version)
	}
	format := strings.TrimPrefix(filepath.Ext(c.out), ".")
	if format != "parquet" && format != "csv" && format != "jsonl" {
		return fmt.Errorf("export: --out %q: the name must end in .parquet, .csv or .jsonl", c.out)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	features, err := modelFeatures(ctx, cl, model)
	if err != nil {
		return err
	}
	// Written to a temporary name and renamed in when complete, so FILE is
	// never a partial export.
	tmp, err := os.CreateTemp(filepath.Dir(c.out), "."+filepath.Base(c.out)+".*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var w exportWriter
	switch format {
	case "csv":
		w, err = newCSVExport(bw, features)
	case "jsonl":
		w = &jsonlExport{w: bw, features: features}
	case "parquet":
		w = &parquetExport{w: trainer.NewParquetWriter(bw, features)}
	}
	if err != nil {
		return err
	}
	n, last := 0, time.Now()
	sum, err := cl.Export(ctx, model, client.ExportOptions{Since: since, Until: until, Version: c.version, WithOutcomesOnly: c.withOutcomesOnly},
		func(r predlog.ExportRow) error {
			if len(r.Features) != len(features) {
				return fmt.Errorf("export: request %s has %d features; %s has %d", r.RequestID, len(r.Features), model, len(features))
			}
			n++
			if !c.quiet && n%10000 == 0 && time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				fmt.Fprintf(c.stderr, "\rexported %d rows", n)
			}
			return w.write(r)
		})
	if err != nil {
		return err
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	src := trainer.ExportSource{Model: model, Server: cl.BaseURL, Since: since, Until: until, Version: c.version, WithOutcomesOnly: c.withOutcomesOnly,
		First: sum.First, Last: sum.Last, Logged: sum.Logged, Rows: sum.Rows, WithOutcomes: sum.Joined, ExportedAt: now.UTC()}
	side, err := json.MarshalIndent(src, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(trainer.SourceSidecar(c.out), append(side, '\n'), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if !c.quiet && n >= 10000 {
		fmt.Fprintln(c.stderr)
	}
	if sum.Rows == 0 {
		fmt.Fprintf(c.stderr, "export: no rows matched (%d logged rows in range, %d outcomes)\n", sum.Logged, sum.Outcomes)
	}
	view := struct {
		Out string `json:"out"`
		trainer.ExportSource
	}{c.out, src}
	return c.print(view, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s: %d rows, %d with outcomes (of %d logged rows in range, %d outcomes read)\n", c.out, sum.Rows, sum.Joined, sum.Logged, sum.Outcomes)
		if !sum.First.IsZero() {
			fmt.Fprintf(w, "rows answered %s to %s\n", sum.First.Format(time.RFC3339), sum.Last.Format(time.RFC3339))
		}
	})
}

// modelFeatures names the model's features as its production version's card
// does (else the newest version's), or the calling-score features.
func modelFeatures(ctx context.Context, cl *client.Client, model string) ([]string, error) {
	m, err := cl.Model(ctx, model)
	if err != nil {
		return nil, err
	}
	for i := len(m.Versions) - 1; i >= 0; i-- {
		v := m.Versions[i]
		if len(v.Card) == 0 {
			continue
		}
		if card, err := artifact.ParseCard(v.Card); err == nil && len(card.Features) > 0 {
			return card.Features, nil
		}
	}
	return trainer.FeatureNames(), nil
}

var exportExtra = []string{"request_id", "version", "time", "answer"}

type csvExport struct {
	w   *csv.Writer
	rec []string
}

func newCSVExport(w io.Writer, features []string) (*csvExport, error) {
	e := &csvExport{w: csv.NewWriter(w)}
	header := append(append(append([]string{}, features...), trainer.LabelColumn), exportExtra...)
	e.rec = make([]string, len(header))
	return e, e.w.Write(header)
}

func (e *csvExport) write(r predlog.ExportRow) error {
	i := 0
	for _, f := range r.Features {
		e.rec[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
		i++
	}
	e.rec[i] = ""
	if r.HasOutcome {
		e.rec[i] = strconv.FormatFloat(r.Outcome, 'g', -1, 64)
	}
	e.rec[i+1], e.rec[i+2], e.rec[i+3], e.rec[i+4] = r.RequestID, strconv.Itoa(r.Version), r.Time.Format(time.RFC3339Nano), strconv.FormatFloat(r.Answer, 'g', -1, 64)
	return e.w.Write(e.rec)
}

func (e *csvExport) close() error { e.w.Flush(); return e.w.Error() }

type jsonlExport struct {
	w        *bufio.Writer
	features []string
	buf      []byte
}

func (e *jsonlExport) write(r predlog.ExportRow) error {
	b := append(e.buf[:0], '{')
	for i, name := range e.features {
		b = strconv.AppendQuote(b, name)
		b = append(b, ':')
		b = strconv.AppendFloat(b, float64(r.Features[i]), 'g', -1, 32)
		b = append(b, ',')
	}
	if r.HasOutcome {
		b = append(b, `"label":`...)
		b = strconv.AppendFloat(b, r.Outcome, 'g', -1, 64)
		b = append(b, ',')
	}
	b = append(b, `"request_id":`...)
	b = strconv.AppendQuote(b, r.RequestID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendQuote(b, r.Time.Format(time.RFC3339Nano))
	b = append(b, `,"answer":`...)
	b = strconv.AppendFloat(b, r.Answer, 'g', -1, 64)
	b = append(b, "}\n"...)
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *jsonlExport) close() error { return nil }

type parquetExport struct {
	w interface {
		Write([]trainer.ParquetRow) (int, error)
		Flush() error
		Close() error
	}
	batch   []trainer.ParquetRow
	grouped int
}

func (e *parquetExport) write(r predlog.ExportRow) error {
	pr := trainer.ParquetRow{RequestID: r.RequestID, Version: int64(r.Version), TimeNanos: r.Time.UnixNano(), Answer: r.Answer, Features: make([]float64, len(r.Features))}
	for i, f := range r.Features {
		pr.Features[i] = float64(f)
	}
	if r.HasOutcome {
		o := r.Outcome
		pr.Label = &o
	}
	e.batch = append(e.batch, pr)
	if len(e.batch) == 1024 {
		return e.flush()
	}
	return nil
}

// flush hands the batch to the writer, and ends a row group every 64Ki rows
// so that memory holds one row group, not the whole export.
func (e *parquetExport) flush() error {
	if _, err := e.w.Write(e.batch); err != nil {
		return err
	}
	e.grouped += len(e.batch)
	e.batch = e.batch[:0]
	if e.grouped >= 1<<16 {
		e.grouped = 0
		return e.w.Flush()
	}
	return nil
}

func (e *parquetExport) close() error {
	if err := e.flush(); err != nil {
		return err
	}
	return e.w.Close()
}
