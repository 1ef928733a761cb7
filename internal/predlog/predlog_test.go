package predlog_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/registry"
)

// FuzzBatch decodes arbitrary bodies as a batch: Validate never panics, and a
// batch it passes names only models whose partitions are valid object keys.
func FuzzBatch(f *testing.F) {
	f.Add(`{"node":"n","rows":[{"model":"calling-score","version":1,"request_id":"r","time":"2026-12-04T17:00:00Z","features":[1,2],"answer":0.5}]}`)
	f.Add(`{"node":"n","outcomes":[{"model":"m","request_id":"r","time":"2026-12-04T17:00:00Z","outcome":1}]}`)
	f.Add(`{"rows":[{"model":"../x","request_id":"r","time":"0001-01-01T00:00:00Z","features":[1]}]}`)
	f.Add(`{"rows":[{"model":"m","request_id":"r","time":"9999-12-31T00:00:00Z","features":[1]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var b predlog.Batch
		if json.Unmarshal([]byte(body), &b) != nil || b.Validate() != nil {
			return
		}
		for _, r := range b.Rows {
			tm := r.Time.UTC()
			key := fmt.Sprintf("logs/%s/dt=%s/hr=%02d/x.parquet", r.Model, tm.Format("2006-01-02"), tm.Hour())
			if err := registry.CheckObjectKey(key); err != nil {
				t.Fatalf("valid row, invalid key: %v", err)
			}
			if time.Unix(0, r.Time.UnixNano()).Year() != r.Time.Year() {
				t.Fatalf("time %v does not survive Unix nanoseconds", r.Time)
			}
		}
	})
}

func TestValidate(t *testing.T) {
	at := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	good := predlog.Row{Model: "calling-score", Version: 1, RequestID: "r", Time: at, Features: []float32{1}}
	if err := (&predlog.Batch{Rows: []predlog.Row{good}}).Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*predlog.Row){
		"bad model":     func(r *predlog.Row) { r.Model = "../etc" },
		"no request id": func(r *predlog.Row) { r.RequestID = "" },
		"no time":       func(r *predlog.Row) { r.Time = time.Time{} },
		"year 3000":     func(r *predlog.Row) { r.Time = at.AddDate(974, 0, 0) },
		"no features":   func(r *predlog.Row) { r.Features = nil },
		"negative v":    func(r *predlog.Row) { r.Version = -1 },
	} {
		r := good
		mut(&r)
		if err := (&predlog.Batch{Rows: []predlog.Row{r}}).Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := (&predlog.Batch{}).Validate(); err == nil {
		t.Error("empty batch: no error")
	}
}
