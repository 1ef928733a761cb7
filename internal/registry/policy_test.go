package registry_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/registry"
)

// A policy duration is a whole duration string or a bare number of seconds;
// anything else is refused, never read in part ("10 minutes" is not 10s).
func TestDurationReadsWholeValuesOnly(t *testing.T) {
	for in, want := range map[string]time.Duration{`"30s"`: 30 * time.Second, `"1h10m"`: 70 * time.Minute, `600`: 10 * time.Minute, `1.5`: 1500 * time.Millisecond} {
		var d registry.Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v, want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`"10 minutes"`, `"10x"`, `"600"`, `"abc"`, `true`, `"30s`} {
		var d registry.Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s: read as %v, want an error", in, time.Duration(d))
		}
	}
}
