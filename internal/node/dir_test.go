package node

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/testutil"
)

// A model served from a directory without its card was never checked against
// golden outputs: the log says so, and with the card it does not.
func TestDirectoryModelWithoutACardIsLoggedAsUnchecked(t *testing.T) {
	testutil.InitORT()
	m := testutil.MustModel(t, 1)
	data, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, withCard := range []bool{false, true} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "calling-score.onnx"), data, 0o644)
		if withCard {
			os.WriteFile(filepath.Join(dir, "calling-score.card.json"), m.Card, 0o644)
		}
		var log bytes.Buffer
		slot := &loader.Slot{}
		w := &DirWatcher{Dir: dir, Model: "calling-score", Slot: slot, Options: loader.DefaultOptions(), Logger: slog.New(slog.NewTextHandler(&log, nil))}
		if err := w.Load(); err != nil {
			t.Fatal(err)
		}
		slot.Close()
		if warned := strings.Contains(log.String(), "without a card"); warned == withCard {
			t.Errorf("card beside the model: %v; log %q", withCard, log.String())
		}
	}
}
