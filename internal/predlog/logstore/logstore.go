// Package logstore keeps the prediction log in the blob store as Parquet
// files, one per shipped batch and (model, hour):
// logs/MODEL/dt=YYYY-MM-DD/hr=HH/<digest>.parquet for rows and
// outcomes/MODEL/dt=…/hr=…/<digest>.parquet for outcomes. A file is named by
// the hash of its content, so a batch shipped twice (a retry after a lost
// answer) is stored once. Export joins rows with their outcomes by request id.
package logstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/registry"
)

// Store writes and reads the prediction log.
type Store struct {
	Objects registry.ObjectStore
}

// New returns a store over objects.
func New(objects registry.ObjectStore) *Store { return &Store{Objects: objects} }

// rowRecord is a logged row as a Parquet record.
type rowRecord struct {
	Model      string    `parquet:"model,dict"`
	Version    int64     `parquet:"version"`
	Arm        string    `parquet:"arm,dict"`
	Source     string    `parquet:"source,dict"`
	RoutingKey string    `parquet:"routing_key"`
	RequestID  string    `parquet:"request_id"`
	TimeNanos  int64     `parquet:"time_unix_nano"`
	Features   []float32 `parquet:"features,list"`
	Answer     float64   `parquet:"answer"`
}

// outcomeRecord is an outcome as a Parquet record.
type outcomeRecord struct {
	Model     string  `parquet:"model,dict"`
	RequestID string  `parquet:"request_id"`
	TimeNanos int64   `parquet:"time_unix_nano"`
	Outcome   float64 `parquet:"outcome"`
}

// Written says what one Write stored.
type Written = predlog.Stored

// Write stores a validated batch: every file is written (or found already
// written) before Write returns, so a batch acknowledged after it is durable.
func (s *Store) Write(ctx context.Context, b *predlog.Batch) (Written, error) {
	var w Written
	rows := map[string][]rowRecord{}
	for _, r := range b.Rows {
		k := partition("logs", r.Model, r.Time)
		rows[k] = append(rows[k], rowRecord{Model: r.Model, Version: int64(r.Version), Arm: r.Arm, Source: r.Source, RoutingKey: r.RoutingKey,
			RequestID: r.RequestID, TimeNanos: r.Time.UnixNano(), Features: r.Features, Answer: r.Answer})
	}
	outs := map[string][]outcomeRecord{}
	for _, o := range b.Outcomes {
		k := partition("outcomes", o.Model, o.Time)
		outs[k] = append(outs[k], outcomeRecord{Model: o.Model, RequestID: o.RequestID, TimeNanos: o.Time.UnixNano(), Outcome: o.Outcome})
	}
	for _, k := range sortedKeys(rows) {
		key, err := put(ctx, s.Objects, k, rows[k])
		if err != nil {
			return w, err
		}
		w.Rows += len(rows[k])
		w.Files = append(w.Files, key)
	}
	for _, k := range sortedKeys(outs) {
		key, err := put(ctx, s.Objects, k, outs[k])
		if err != nil {
			return w, err
		}
		w.Outcomes += len(outs[k])
		w.Files = append(w.Files, key)
	}
	return w, nil
}

func put[T any](ctx context.Context, objects registry.ObjectStore, dir string, recs []T) (string, error) {
	var buf bytes.Buffer
	if err := parquet.Write(&buf, recs); err != nil {
		return "", fmt.Errorf("encode %s: %w", dir, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	key := dir + "/" + hex.EncodeToString(sum[:16]) + ".parquet"
	err := objects.PutObject(ctx, key, buf.Bytes())
	if errors.Is(err, registry.ErrConflict) {
		err = nil // the same bytes, stored by an earlier try
	}
	if err != nil {
		return "", err
	}
	return key, nil
}

// partition names the hour directory of a model's logs or outcomes.
func partition(kind, model string, t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s/%s/dt=%s/hr=%02d", kind, model, t.Format("2006-01-02"), t.Hour())
}

// partitionHour reads the hour back from a key, or false for a foreign key.
func partitionHour(key string) (time.Time, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 5 || !strings.HasPrefix(parts[2], "dt=") || !strings.HasPrefix(parts[3], "hr=") || !strings.HasSuffix(parts[4], ".parquet") {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02 15", parts[2][3:]+" "+parts[3][3:])
	return t, err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Filter selects the rows of an export.
type Filter = predlog.ExportFilter

// Summary counts what an export read and wrote.
type Summary = predlog.ExportSummary

// Export calls fn for each logged row of model that passes f, in the order of
// its files (by hour), joined with the latest outcome of its request id.
// Memory holds one file's rows and the outcomes' map (request id → outcome),
// never the whole log.
func (s *Store) Export(ctx context.Context, model string, f Filter, fn func(predlog.ExportRow) error) (Summary, error) {
	var sum Summary
	if err := registry.CheckModelName(model); err != nil {
		return sum, err
	}
	outcomes := map[string]outcomeRecord{}
	okeys, err := s.Objects.ListObjects(ctx, "outcomes/"+model+"/")
	if err != nil {
		return sum, err
	}
	for _, o := range okeys {
		// Outcomes come after their rows, so earlier hours cannot match.
		if h, ok := partitionHour(o.Key); !ok || (!f.Since.IsZero() && h.Add(time.Hour).Before(f.Since)) {
			continue
		}
		recs, err := read[outcomeRecord](ctx, s.Objects, o.Key)
		if err != nil {
			return sum, err
		}
		for _, r := range recs {
			if prev, ok := outcomes[r.RequestID]; !ok || r.TimeNanos >= prev.TimeNanos {
				outcomes[r.RequestID] = r
			}
		}
		sum.Outcomes += len(recs)
	}
	lkeys, err := s.Objects.ListObjects(ctx, "logs/"+model+"/")
	if err != nil {
		return sum, err
	}
	for _, l := range lkeys {
		h, ok := partitionHour(l.Key)
		if !ok || (!f.Since.IsZero() && h.Add(time.Hour).Before(f.Since)) || (!f.Until.IsZero() && !h.Before(f.Until)) {
			continue
		}
		recs, err := read[rowRecord](ctx, s.Objects, l.Key)
		if err != nil {
			return sum, err
		}
		sum.Files++
		for _, r := range recs {
			t := time.Unix(0, r.TimeNanos).UTC()
			if (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && !t.Before(f.Until)) || (f.Version != 0 && int(r.Version) != f.Version) {
				continue
			}
			sum.Logged++
			o, has := outcomes[r.RequestID]
			if f.WithOutcomesOnly && !has {
				continue
			}
			er := predlog.ExportRow{Row: predlog.Row{Model: r.Model, Version: int(r.Version), Arm: r.Arm, Source: r.Source, RoutingKey: r.RoutingKey,
				RequestID: r.RequestID, Time: t, Features: r.Features, Answer: r.Answer}, HasOutcome: has, Outcome: o.Outcome}
			if has {
				sum.Joined++
			}
			if sum.First.IsZero() || t.Before(sum.First) {
				sum.First = t
			}
			if t.After(sum.Last) {
				sum.Last = t
			}
			sum.Rows++
			if err := fn(er); err != nil {
				return sum, err
			}
		}
	}
	return sum, nil
}

func read[T any](ctx context.Context, objects registry.ObjectStore, key string) ([]T, error) {
	b, err := objects.GetObject(ctx, key)
	if err != nil {
		return nil, err
	}
	recs, err := parquet.Read[T](bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return recs, nil
}
