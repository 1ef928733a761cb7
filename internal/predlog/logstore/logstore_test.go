package logstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/predlog/logstore"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/fileblob"
	_ "github.com/modelops/modelops/internal/registry/s3blob"
	"github.com/modelops/modelops/internal/testutil"
)

func TestLogStoreFile(t *testing.T) {
	s, err := fileblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runLogStore(t, s)
}

func TestLogStoreS3(t *testing.T) {
	srv := testutil.MustS3(t, "logs")
	b, err := registry.OpenBlobStore(context.Background(), srv.StoreURL("logs", "p", ""))
	if err != nil {
		t.Fatal(err)
	}
	runLogStore(t, b.(registry.ObjectStore))
}

// hour0 is the hour the test's rows are answered in.
var hour0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func rows(model string, version, from, n int, at time.Time) []predlog.Row {
	var out []predlog.Row
	for i := from; i < from+n; i++ {
		out = append(out, predlog.Row{Model: model, Version: version, Arm: "production", Source: "model", RoutingKey: fmt.Sprint("user-", i%7),
			RequestID: fmt.Sprint("req-", i), Time: at.Add(time.Duration(i) * time.Second), Features: []float32{float32(i), 0.5, 1}, Answer: float64(i) / 1000})
	}
	return out
}

// runLogStore writes rows over two hours and two versions, outcomes for some
// of them three hours later, a batch twice, and checks what each filter exports.
func runLogStore(t *testing.T, objects registry.ObjectStore) {
	ctx := context.Background()
	st := logstore.New(objects)
	first := &predlog.Batch{Node: "n1", Rows: append(rows("calling-score", 1, 0, 50, hour0), rows("other", 1, 0, 5, hour0)...)}
	w, err := st.Write(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rows != 55 || len(w.Files) != 2 {
		t.Fatalf("first batch: %+v, want 55 rows in 2 files (one per model)", w)
	}
	// A retry of the same batch is stored once.
	if w2, err := st.Write(ctx, first); err != nil || strings.Join(w2.Files, ",") != strings.Join(w.Files, ",") {
		t.Fatalf("retry: %+v %v, want the same files", w2, err)
	}
	if _, err := st.Write(ctx, &predlog.Batch{Node: "n1", Rows: rows("calling-score", 2, 50, 30, hour0.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	// Outcomes for every even request id, hours later.
	var outs []predlog.Outcome
	for i := 0; i < 80; i += 2 {
		outs = append(outs, predlog.Outcome{Model: "calling-score", RequestID: fmt.Sprint("req-", i), Time: hour0.Add(3 * time.Hour), Outcome: float64(i)})
	}
	if w, err := st.Write(ctx, &predlog.Batch{Node: "n1", Outcomes: outs}); err != nil || w.Outcomes != 40 {
		t.Fatalf("outcomes: %+v %v", w, err)
	}
	keys, err := objects.ListObjects(ctx, "outcomes/calling-score/")
	if err != nil || len(keys) != 1 || !strings.HasPrefix(keys[0].Key, "outcomes/calling-score/dt=2026-12-04/hr=12/") {
		t.Fatalf("outcome files: %+v %v", keys, err)
	}

	for _, tc := range []struct {
		name         string
		f            logstore.Filter
		rows, joined int
	}{
		{"all", logstore.Filter{}, 80, 40},
		{"version 2", logstore.Filter{Version: 2}, 30, 15},
		{"with outcomes only", logstore.Filter{WithOutcomesOnly: true}, 40, 40},
		{"since the second hour", logstore.Filter{Since: hour0.Add(time.Hour)}, 30, 15},
		{"until 10 s in", logstore.Filter{Until: hour0.Add(10 * time.Second)}, 10, 5},
		{"a window in the first hour", logstore.Filter{Since: hour0.Add(20 * time.Second), Until: hour0.Add(30 * time.Second)}, 10, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			sum, err := st.Export(ctx, "calling-score", tc.f, func(r predlog.ExportRow) error {
				if seen[r.RequestID] {
					t.Errorf("%s exported twice", r.RequestID)
				}
				seen[r.RequestID] = true
				var i int
				fmt.Sscanf(r.RequestID, "req-%d", &i)
				if r.HasOutcome != (i%2 == 0) || (r.HasOutcome && r.Outcome != float64(i)) || r.Features[0] != float32(i) || r.Model != "calling-score" {
					t.Errorf("row %+v: wrong join or features", r)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Rows != tc.rows || sum.Joined != tc.joined || len(seen) != tc.rows {
				t.Errorf("summary %+v, %d rows seen; want %d rows, %d joined", sum, len(seen), tc.rows, tc.joined)
			}
		})
	}
	// Keys outside the log's namespaces are refused.
	for _, k := range []string{"blobs/sha256/x", "logs/../x", "/logs/x", "logs/a//b"} {
		if err := objects.PutObject(ctx, k, []byte("x")); err == nil {
			t.Errorf("PutObject %q: no error", k)
		}
	}
}
