package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/registry"
)

// LogStore keeps the prediction log (internal/predlog/logstore over the blob
// store). Write returns once the batch is durable.
type LogStore interface {
	Write(ctx context.Context, b *predlog.Batch) (predlog.Stored, error)
	Export(ctx context.Context, model string, f predlog.ExportFilter, fn func(predlog.ExportRow) error) (predlog.ExportSummary, error)
}

// shipLog takes a scorer's prediction log batch (POST /api/v1/logs): only from
// a scorer token bound to the batch's node, as reports are; within
// predlog.MaxBatchBytes (413) and predlog's rules (400); only for models the
// registry knows. It answers 200 only once every file is in the blob store.
func (cp *ControlPlane) shipLog(c echo.Context) error {
	if cp.Logs == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this control plane keeps no prediction log (its blob store holds no named objects)"}
	}
	tok, _ := c.Get(tokenKey).(*registry.Token)
	if cp.RequireAuth && (tok == nil || tok.Role != registry.RoleScorer) {
		role := "none"
		if tok != nil {
			role = tok.Role
		}
		return &requestError{status: http.StatusForbidden, code: "forbidden", msg: "prediction logs come only from a scorer token, one per node; this one has role " + role}
	}
	body, err := readBody(c, predlog.MaxBatchBytes)
	if err != nil {
		if status, _ := statusOf(err); status == http.StatusRequestEntityTooLarge {
			return &requestError{status: status, code: "too_large", msg: fmt.Sprintf("log batch is larger than %d bytes, the limit of one batch (ship smaller batches)", predlog.MaxBatchBytes)}
		}
		return err
	}
	var b predlog.Batch
	if err := json.Unmarshal(body, &b); err != nil {
		return badRequest("malformed log batch: " + err.Error())
	}
	if len(b.Rows)+len(b.Outcomes) > predlog.MaxBatchRows {
		return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large",
			msg: fmt.Sprintf("log batch holds %d rows and outcomes, more than the %d of one batch", len(b.Rows)+len(b.Outcomes), predlog.MaxBatchRows)}
	}
	if err := b.Validate(); err != nil {
		return badRequest(err.Error())
	}
	ctx := c.Request().Context()
	if tok != nil {
		if err := registry.CheckNodeName(b.Node); err != nil {
			return badRequest("log batch node: " + err.Error())
		}
		bound := tok.Node
		if bound == "" {
			if bound, err = cp.Registry.BindTokenNode(ctx, tok.ID, b.Node); err != nil {
				return err
			}
		}
		if bound != b.Node {
			return &requestError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf("token %s is bound to node %q; it cannot ship logs for node %q", tok.Name, bound, truncate(b.Node, 200))}
		}
	}
	seen := map[string]bool{}
	check := func(m string) error {
		if seen[m] {
			return nil
		}
		seen[m] = true
		if _, err := cp.Registry.Model(ctx, m); err != nil {
			return fmt.Errorf("log batch: model %s: %w", m, err)
		}
		return nil
	}
	for _, r := range b.Rows {
		if err := check(r.Model); err != nil {
			return err
		}
	}
	for _, o := range b.Outcomes {
		if err := check(o.Model); err != nil {
			return err
		}
	}
	w, err := cp.Logs.Write(ctx, &b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

// export streams a model's logged rows joined with their outcomes as JSON
// lines (predlog.ExportLine), ending with a summary line, or an error line if
// the export stopped part way (the status is already sent by then).
func (cp *ControlPlane) export(c echo.Context) error {
	if cp.Logs == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this control plane keeps no prediction log"}
	}
	// A scorer token is a node's credential; the log's production rows are
	// read by people and their tools (admin or viewer).
	if tok, _ := c.Get(tokenKey).(*registry.Token); tok != nil && tok.Role == registry.RoleScorer {
		return &requestError{status: http.StatusForbidden, code: "forbidden", msg: "exports are for admin and viewer tokens; a scorer token only ships the log"}
	}
	ctx := c.Request().Context()
	model := c.Param("model")
	if _, err := cp.Registry.Model(ctx, model); err != nil {
		return err
	}
	var f predlog.ExportFilter
	q := c.QueryParams()
	for _, p := range []struct {
		name string
		into *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return badRequest(fmt.Sprintf("%s=%q is not an RFC 3339 time", p.name, truncate(s, 64)))
			}
			*p.into = t
		}
	}
	if s := q.Get("version"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return badRequest(fmt.Sprintf("version=%q is not a version number", truncate(s, 64)))
		}
		f.Version = v
	}
	if s := q.Get("with_outcomes_only"); s != "" {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return badRequest(fmt.Sprintf("with_outcomes_only=%q is not true or false", truncate(s, 64)))
		}
		f.WithOutcomesOnly = v
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return badRequest("until must be after since")
	}
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	res.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(res)
	sum, err := cp.Logs.Export(ctx, model, f, func(r predlog.ExportRow) error {
		return enc.Encode(predlog.ExportLine{ExportRow: &r})
	})
	if err != nil {
		if !errors.Is(err, ctx.Err()) {
			cp.Logger.Error("export", "model", model, "err", err)
		}
		_ = enc.Encode(predlog.ExportLine{Error: err.Error()})
		return nil
	}
	return enc.Encode(predlog.ExportLine{End: &sum})
}
