package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
)

// DirWatcher serves a model from a directory with no control plane: DIR/NAME.onnx
// with its card in DIR/NAME.card.json (optional). Writing a new file under a temp
// name and renaming it over NAME.onnx is a promotion. A file is verified (signature,
// golden inputs, warm-up) before it serves; a partial or broken file never serves
// and the version being served stays.
type DirWatcher struct {
	Dir     string
	Model   string
	Slot    *loader.Slot
	Options loader.Options
	Logger  *slog.Logger
	// Settle is how long a file must stay unchanged before it is read (default
	// 200 ms), so a file written in place is read once it is complete.
	Settle time.Duration
	// LoadTimeout bounds verification, golden inputs and warm-up of a file
	// (default DefaultLoadTimeout).
	LoadTimeout time.Duration

	mu      sync.Mutex
	version int
	loads   int
	failed  int
	lastErr error
}

// Status reports loads and the last error.
func (w *DirWatcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{Loads: w.loads, FailedLoads: w.failed}
	if w.lastErr != nil {
		s.LastError = w.lastErr.Error()
	}
	return s
}

func (w *DirWatcher) modelPath() string { return filepath.Join(w.Dir, w.Model+".onnx") }
func (w *DirWatcher) cardPath() string  { return filepath.Join(w.Dir, w.Model+".card.json") }

// Load tries the model file now; a missing file is not an error.
func (w *DirWatcher) Load() error { return w.LoadContext(context.Background()) }

// LoadContext is Load under ctx (and the load timeout).
func (w *DirWatcher) LoadContext(ctx context.Context) error {
	timeout := w.LoadTimeout
	if timeout <= 0 {
		timeout = DefaultLoadTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := os.ReadFile(w.modelPath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return w.fail(err)
	}
	// A cheap look at the protobuf first: a half-written or foreign file is named
	// as such before ONNX Runtime is asked to load it.
	if _, err := artifact.Inspect(data); err != nil {
		return w.fail(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if _, cur, ok := w.Slot.Current(); ok && cur == digest {
		return nil
	}
	var card *artifact.Card
	if raw, err := os.ReadFile(w.cardPath()); err == nil {
		if card, err = artifact.ParseCard(raw); err != nil {
			return w.fail(err)
		}
	} else if !os.IsNotExist(err) {
		return w.fail(err)
	}
	// Load from a private copy, so the file can change under us without harm.
	tmp, err := os.CreateTemp("", "modelops-dir-*.onnx")
	if err != nil {
		return w.fail(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return w.fail(err)
	}
	tmp.Close()
	var want *artifact.Signature
	if sig, ok := artifact.Declared(w.Model); ok {
		want = &sig
	}
	s, err := loader.PrepareContext(ctx, tmp.Name(), w.Model, want, card, w.Options)
	if err != nil {
		return w.fail(err)
	}
	w.mu.Lock()
	w.version++
	v := w.version
	w.loads++
	w.lastErr = nil
	w.mu.Unlock()
	w.Slot.Swap(loader.NewLoaded(s, v, digest, card))
	if card == nil {
		w.Logger.Warn("serving model from directory without a card: its outputs were not checked against golden ones", "model", w.Model, "version", v, "digest", digest[:12], "card", w.cardPath())
		return nil
	}
	w.Logger.Info("serving model from directory", "model", w.Model, "version", v, "digest", digest[:12])
	return nil
}

func (w *DirWatcher) fail(err error) error {
	err = fmt.Errorf("%s: %w", w.modelPath(), err)
	w.mu.Lock()
	w.failed++
	w.lastErr = err
	w.mu.Unlock()
	w.Logger.Error("model file refused; keeping the version being served", "err", err)
	return err
}

// Run watches the directory until ctx is done.
func (w *DirWatcher) Run(ctx context.Context) error {
	if w.Settle == 0 {
		w.Settle = 200 * time.Millisecond
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fw.Close()
	if err := fw.Add(w.Dir); err != nil {
		return fmt.Errorf("watch %s: %w", w.Dir, err)
	}
	w.LoadContext(ctx)
	var timer *time.Timer
	fire := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			name := filepath.Base(ev.Name)
			if name != w.Model+".onnx" && name != w.Model+".card.json" {
				continue
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename) == 0 {
				continue
			}
			// Debounce: act once the file has been quiet for Settle.
			if timer != nil {
				timer.Stop()
			}
			timer = time.AfterFunc(w.Settle, func() {
				select {
				case fire <- struct{}{}:
				default:
				}
			})
		case <-fire:
			w.LoadContext(ctx)
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.Logger.Warn("directory watch", "err", err)
		}
	}
}
