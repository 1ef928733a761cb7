package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Reporter sends a Recorder's counts to the control plane every Interval, with
// what the node serves: the report doubles as the node's heartbeat. A report that
// cannot be delivered is dropped; serving never waits on it.
type Reporter struct {
	ControlPlane string
	Node         string
	Address      string
	Model        string
	Interval     time.Duration
	Recorder     *Recorder
	// Served and Ready describe the node at report time.
	Served func() []Served
	Ready  func() bool
	// LoadError, when set, says why the node does not serve its deployment.
	LoadError func() string
	HTTP      *http.Client
	Logger    *slog.Logger
	// Token authenticates the reports (role scorer).
	Token string
	// Models, when set, are the models reported (Model, Recorder, Served and
	// LoadError describe one model otherwise).
	Models func() []ModelSource
	// Deliver, when set, sends the report (JSON) instead of a POST to
	// ControlPlane: a client that follows a list of control planes.
	Deliver func(ctx context.Context, report []byte) error
}

// ModelSource is where a report finds one model's counts and state.
type ModelSource struct {
	Model     string
	Recorder  *Recorder
	Served    func() []Served
	LoadError func() string
}

// Run reports until ctx is done.
func (r *Reporter) Run(ctx context.Context) {
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	if r.HTTP == nil {
		r.HTTP = &http.Client{Timeout: 2 * time.Second}
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	dropped := 0 // reports lost since the last one delivered
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.send(ctx)
		switch {
		case err == nil && dropped > 0:
			r.Logger.Info("delivering reports again", "dropped", dropped)
			dropped = 0
		case err != nil && ctx.Err() == nil:
			if dropped == 0 {
				r.Logger.Warn("cannot deliver reports; dropping them until the control plane takes them", "err", err)
			}
			dropped++
		}
	}
}

func (r *Reporter) send(ctx context.Context) error {
	rep := Report{Node: r.Node, Address: r.Address, Time: time.Now().UTC(), Interval: r.Interval.Seconds()}
	sources := []ModelSource{{Model: r.Model, Recorder: r.Recorder, Served: r.Served, LoadError: r.LoadError}}
	if r.Models != nil {
		sources = r.Models()
	}
	for _, src := range sources {
		mr := ModelReport{Model: src.Model, Windows: []Window{}}
		if src.Recorder != nil {
			mr.Windows = src.Recorder.Flush()
		}
		if src.Served != nil {
			mr.Served = src.Served()
		}
		if src.LoadError != nil {
			mr.LoadError = src.LoadError()
		}
		rep.Models = append(rep.Models, mr)
	}
	if r.Ready != nil {
		rep.Ready = r.Ready()
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if r.Deliver != nil {
		timeout := r.HTTP.Timeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return r.Deliver(ctx, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.ControlPlane, "/")+"/api/v1/reports", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		// The control plane says why ({"error":{"message":…}}): a revoked token,
		// a role that may not report.
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&e)
		if e.Error.Message != "" {
			return fmt.Errorf("report refused: HTTP %d: %s", resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("report refused: HTTP %d", resp.StatusCode)
	}
	return nil
}
