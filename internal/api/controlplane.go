package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/buildinfo"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// ControlPlane serves /api/v1 over a registry.
type ControlPlane struct {
	Registry *registry.Registry
	// Monitor, when set, takes reports and answers health and fleet.
	Monitor *monitor.Monitor
	// RequireAuth makes every /api/v1 route need a bearer token of the right role.
	RequireAuth bool
	Logger      *slog.Logger
	// MaxPushBytes bounds a push request (artifact plus card).
	MaxPushBytes int64
	// PushTimeout bounds how long a push may take to upload and verify.
	PushTimeout time.Duration
	// Heartbeat is the interval of keep-alive comments on the watch stream.
	Heartbeat time.Duration
	// ReportsPerSecond and ReportBurst bound each scorer token's reports (each
	// address's with auth off).
	ReportsPerSecond float64
	ReportBurst      int
	// MaxWatchStreams and MaxWatchStreamsPerToken bound the open watch
	// streams in all and per token (per address with auth off).
	MaxWatchStreams         int
	MaxWatchStreamsPerToken int
	// MaxDownloadsPerToken bounds each token's artifact downloads at once
	// (each address's with auth off), MaxWatchStreams all of them.
	MaxDownloadsPerToken int
	// Dashboard, when set, is the admin dashboard's assets (web.Static),
	// served at /.
	Dashboard fs.FS
	// Sessions, when set, keeps dashboard sessions where every replica sees
	// them; without it they live in this process's memory.
	Sessions SessionStore
	// Logs, when set, keeps the prediction log (POST /logs, GET …/export).
	Logs LogStore

	closeOnce    sync.Once
	closing      chan struct{}
	sessions     sessions
	reportLimits rateLimits
	streams      streamLimits
	downloads    streamLimits
}

// CloseStreams ends every watch stream, so that a server shutdown does not wait
// for clients that never go idle. Call it before closing the server.
func (cp *ControlPlane) CloseStreams() {
	cp.closeOnce.Do(func() { close(cp.closing) })
}

// NewControlPlane returns a control plane API with defaults.
func NewControlPlane(reg *registry.Registry, log *slog.Logger) *ControlPlane {
	return &ControlPlane{Registry: reg, Logger: log, MaxPushBytes: 1 << 30, PushTimeout: 30 * time.Minute, Heartbeat: 15 * time.Second,
		ReportsPerSecond: DefaultReportsPerSecond, ReportBurst: DefaultReportBurst,
		MaxWatchStreams: DefaultMaxWatchStreams, MaxWatchStreamsPerToken: DefaultMaxWatchStreamsPerToken,
		MaxDownloadsPerToken: DefaultMaxDownloadsPerToken, closing: make(chan struct{})}
}

// maxJSONBody bounds every JSON request body on the control plane.
const maxJSONBody = 1 << 20

// Handler returns the routes.
func (cp *ControlPlane) Handler() http.Handler {
	cp.sessions.store = cp.Sessions
	e := newEcho(cp.Logger)
	e.Pre(strictQuery)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector("control-plane"))
	if cp.Monitor != nil {
		reg.MustRegister(monitor.Collector{M: cp.Monitor})
	}
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	e.POST("/ui/login", cp.login)
	e.POST("/ui/logout", cp.logout)
	e.GET("/ui/session", cp.sessionInfo)
	if cp.Dashboard != nil {
		dashboard(e, cp.Dashboard)
	}
	g := e.Group("/api/v1")
	read, scorer, admin := cp.authorize(permRead), cp.authorize(permScorer), cp.authorize(permAdmin)
	g.GET("/models", cp.listModels, read)
	g.GET("/models/:model", cp.getModel, read)
	g.GET("/models/:model/versions", cp.listVersions, read)
	g.POST("/models/:model/versions", cp.push, admin)
	g.GET("/models/:model/versions/:version", cp.getVersion, read)
	g.GET("/models/:model/versions/:version/artifact", cp.getArtifact, scorer)
	g.GET("/models/:model/deployment", cp.getDeployment, read)
	g.POST("/models/:model/promote", cp.promote, admin)
	g.POST("/models/:model/rollback", cp.rollback, admin)
	g.POST("/models/:model/canary", cp.canary, admin)
	g.DELETE("/models/:model/canary", cp.clearCanary, admin)
	g.POST("/models/:model/blend", cp.blend, admin)
	g.GET("/models/:model/health", cp.health, read)
	g.GET("/models/:model/series", cp.series, read)
	g.GET("/models/:model/policy", cp.getPolicy, read)
	g.PUT("/models/:model/policy", cp.putPolicy, admin)
	g.POST("/models/:model/evaluation", cp.recordEvaluation, admin)
	g.GET("/models/:model/rollout", cp.getRollout, read)
	g.POST("/models/:model/rollout", cp.startRollout, admin)
	g.POST("/models/:model/rollout/pause", cp.pauseRollout, admin)
	g.POST("/models/:model/rollout/resume", cp.resumeRollout, admin)
	g.POST("/models/:model/rollout/abort", cp.abortRollout, admin)
	g.GET("/models/:model/rollout-policy", cp.getRolloutPolicy, read)
	g.PUT("/models/:model/rollout-policy", cp.putRolloutPolicy, admin)
	g.GET("/events", cp.listEvents, read)
	g.GET("/watch", cp.watch, read)
	g.POST("/reports", cp.report, scorer)
	g.GET("/fleet", cp.fleet, read)
	g.POST("/logs", cp.shipLog, scorer)
	g.GET("/models/:model/export", cp.export, read)
	g.POST("/gc", cp.gc, admin)
	g.GET("/tokens", cp.listTokens, admin)
	g.POST("/tokens", cp.createToken, admin)
	g.DELETE("/tokens/:id", cp.revokeToken, admin)
	g.GET("/whoami", cp.whoami, read)
	g.GET("/backup", cp.backup, admin)
	return headAsGet(e)
}

// strictQuery refuses a query string Go cannot parse whole (more than 10,000
// parameters, a semicolon, a bad escape): echo would drop what it could not
// parse, so ?since=2^64-1 after 10,000 other parameters was read as no since
// at all, past the range check.
func strictQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := url.ParseQuery(c.Request().URL.RawQuery); err != nil {
			return badRequest("malformed query string: " + truncate(err.Error(), 200))
		}
		return next(c)
	}
}

func (cp *ControlPlane) listModels(c echo.Context) error {
	ms, err := cp.Registry.Models(c.Request().Context())
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []registry.Model{}
	}
	return c.JSON(http.StatusOK, map[string]any{"models": ms})
}

func (cp *ControlPlane) getModel(c echo.Context) error {
	ctx := c.Request().Context()
	m, err := cp.Registry.Model(ctx, c.Param("model"))
	if err != nil {
		return err
	}
	vs, err := cp.Registry.Versions(ctx, m.Name)
	if err != nil {
		return err
	}
	if vs == nil {
		vs = []registry.Version{}
	}
	return c.JSON(http.StatusOK, wire.ModelView{Model: *m, Versions: vs})
}

func (cp *ControlPlane) listVersions(c echo.Context) error {
	vs, err := cp.Registry.Versions(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	if vs == nil {
		vs = []registry.Version{}
	}
	return c.JSON(http.StatusOK, map[string]any{"versions": vs})
}

func versionParam(c echo.Context) (int, error) {
	s := c.Param("version")
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || len(s) > 10 {
		return 0, badRequest(fmt.Sprintf("version %q must be a positive whole number", truncate(s, 40)))
	}
	return n, nil
}

func (cp *ControlPlane) getVersion(c echo.Context) error {
	n, err := versionParam(c)
	if err != nil {
		return err
	}
	v, err := cp.Registry.Version(c.Request().Context(), c.Param("model"), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// Headers on artifact downloads.
const (
	HeaderDigest  = "X-Artifact-Sha256"
	HeaderVersion = "X-Model-Version"
)

func (cp *ControlPlane) getArtifact(c echo.Context) error {
	n, err := versionParam(c)
	if err != nil {
		return err
	}
	key, perKey, total := streamKey(c), cp.MaxDownloadsPerToken, cp.MaxWatchStreams
	if perKey <= 0 {
		perKey = DefaultMaxDownloadsPerToken
	}
	if total <= 0 {
		total = DefaultMaxWatchStreams
	}
	if err := cp.downloads.acquireWhat("artifact downloads", key, perKey, total); err != nil {
		return err
	}
	defer cp.downloads.release(key)
	ctx := c.Request().Context()
	v, rc, err := cp.Registry.OpenArtifact(ctx, c.Param("model"), n)
	if err != nil {
		return err
	}
	defer rc.Close()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/octet-stream")
	w.Header().Set(echo.HeaderContentLength, strconv.FormatInt(v.Size, 10))
	w.Header().Set(HeaderDigest, v.Digest)
	w.Header().Set(HeaderVersion, strconv.Itoa(v.Number))
	extendDeadlines(w, 0, 30*time.Minute)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		// Headers are gone; cutting the body short makes the client see a short
		// read and its digest check fail.
		cp.Logger.Error("artifact download cut short", "model", v.Model, "version", v.Number, "err", err)
	}
	return nil
}

func (cp *ControlPlane) getDeployment(c echo.Context) error {
	d, err := cp.Registry.Deployment(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// push takes multipart/form-data with an optional "card" part (JSON) followed by an
// "artifact" part (the ONNX file), and the artifact's sha256 in the query
// (?sha256=) or the X-Artifact-Sha256 header. The artifact streams straight into
// the registry's staging file.
func (cp *ControlPlane) push(c echo.Context) error {
	req := c.Request()
	model := c.Param("model")
	if err := registry.CheckModelName(model); err != nil {
		return err
	}
	digest := c.QueryParam("sha256")
	if digest == "" {
		digest = req.Header.Get(HeaderDigest)
	}
	if digest == "" {
		return badRequest("push needs the artifact's sha256 in ?sha256= or the " + HeaderDigest + " header")
	}
	if err := registry.CheckDigest(digest); err != nil {
		return err
	}
	reason := c.QueryParam("reason")
	if err := checkText("reason", reason); err != nil {
		return err
	}
	// A push that states a length past the limit is refused before its body is
	// read: a gigabyte too many is not worth a gigabyte of upload to learn so.
	if req.ContentLength > cp.MaxPushBytes {
		return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("push of %d bytes is larger than this control plane takes: %d (its --max-artifact-bytes and room for a card)", req.ContentLength, cp.MaxPushBytes)}
	}
	extendDeadlines(c.Response(), cp.PushTimeout, cp.PushTimeout)
	req.Body = http.MaxBytesReader(c.Response(), req.Body, cp.MaxPushBytes)
	mr, err := req.MultipartReader()
	if err != nil {
		return badRequest("push must be multipart/form-data with an optional \"card\" part and an \"artifact\" part: " + err.Error())
	}
	var card []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return badRequest("push has no \"artifact\" part")
		}
		if err != nil {
			return badRequest("reading multipart body: " + err.Error())
		}
		switch part.FormName() {
		case "card":
			card, err = io.ReadAll(io.LimitReader(part, artifact.MaxCardBytes+1))
			if err != nil {
				return badRequest("reading card: " + err.Error())
			}
			if len(card) > artifact.MaxCardBytes {
				return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("card is larger than %d bytes", artifact.MaxCardBytes)}
			}
		case "artifact":
			res, err := cp.Registry.Push(req.Context(), registry.PushRequest{
				Model: model, Digest: digest, Artifact: part, Card: card, Actor: actorOf(c), Reason: reason,
			})
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("push is larger than %d bytes", cp.MaxPushBytes)}
				}
				return err
			}
			status := http.StatusOK
			out := wire.PushResponse{Version: *res.Version, Created: res.Created}
			if res.Created {
				status = http.StatusCreated
				out.Revision = res.Event.Revision
			}
			out.Version.Card = nil
			return c.JSON(status, out)
		default:
			return badRequest(fmt.Sprintf("unexpected multipart part %q (want \"card\" then \"artifact\")", truncate(part.FormName(), 40)))
		}
	}
}

func (cp *ControlPlane) promote(c echo.Context) error {
	var b wire.AliasBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Version < 1 {
		return badRequest("promote needs \"version\": a positive whole number")
	}
	if err := checkText("reason", b.Reason); err != nil {
		return err
	}
	ev, err := cp.Registry.Promote(c.Request().Context(), registry.AliasRequest{
		Model: c.Param("model"), Version: b.Version, ExpectRevision: b.ExpectRevision, Actor: actorOf(c), Reason: b.Reason, Force: b.Force,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (cp *ControlPlane) rollback(c echo.Context) error {
	var b wire.AliasBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Version < 0 {
		return badRequest("rollback \"version\" must be a positive whole number, or absent for the previous version")
	}
	if err := checkText("reason", b.Reason); err != nil {
		return err
	}
	ev, err := cp.Registry.Rollback(c.Request().Context(), registry.AliasRequest{
		Model: c.Param("model"), Version: b.Version, ExpectRevision: b.ExpectRevision, Actor: actorOf(c), Reason: b.Reason, Force: b.Force,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

// maxQueryNumber bounds every numeric query parameter: revisions and counts
// fit an int64, and a value past it is a mistake or an attack (since=2^64-1
// wrapped around to every event), never a request to honour.
const maxQueryNumber = math.MaxInt64

func uintQuery(c echo.Context, name string) (uint64, error) {
	s := c.QueryParam(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) || (err == nil && n > maxQueryNumber) {
		return 0, badRequest(fmt.Sprintf("%s=%s is out of range: at most %d", name, truncate(s, 40), uint64(maxQueryNumber)))
	}
	if err != nil {
		return 0, badRequest(fmt.Sprintf("%s=%q must be a whole number, 0 or more", name, truncate(s, 40)))
	}
	return n, nil
}

func (cp *ControlPlane) listEvents(c echo.Context) error {
	since, err := uintQuery(c, "since")
	if err != nil {
		return err
	}
	limit, err := uintQuery(c, "limit")
	if err != nil {
		return err
	}
	if limit > 10000 {
		limit = 10000
	}
	last, err := uintQuery(c, "last")
	if err != nil {
		return err
	}
	if last > 10000 {
		last = 10000
	}
	if last > 0 && limit > 0 {
		return badRequest("give limit (the first events after since) or last (the latest ones), not both")
	}
	evs, err := cp.Registry.Events(c.Request().Context(), registry.EventQuery{Model: c.QueryParam("model"), Since: since, Limit: int(limit), Last: int(last)})
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []registry.Event{}
	}
	return c.JSON(http.StatusOK, map[string]any{"events": evs})
}

// watch streams events as server-sent events, starting after ?since= (or the
// Last-Event-ID header a reconnecting client sends). Each event's id is its
// revision. A ": ping" comment keeps idle connections alive.
func (cp *ControlPlane) watch(c echo.Context) error {
	since, err := uintQuery(c, "since")
	if err != nil {
		return err
	}
	if last := c.Request().Header.Get("Last-Event-ID"); last != "" {
		if n, err := strconv.ParseUint(last, 10, 64); err == nil && n > since && n <= maxQueryNumber {
			since = n
		}
	}
	model := c.QueryParam("model")
	if model != "" {
		if err := registry.CheckModelName(model); err != nil {
			return err
		}
	}
	// A client ahead of the registry saw another history: this one was restored
	// from a backup since. Its revisions after the backup's are new events, so
	// the client gets them from where this registry stands.
	rev, err := cp.Registry.Revision()
	if err != nil {
		return err
	}
	ahead := since > rev
	if ahead {
		since = rev
	}
	key := streamKey(c)
	perKey, total := cp.MaxWatchStreamsPerToken, cp.MaxWatchStreams
	if perKey <= 0 {
		perKey = DefaultMaxWatchStreamsPerToken
	}
	if total <= 0 {
		total = DefaultMaxWatchStreams
	}
	if err := cp.streams.acquire(key, perKey, total); err != nil {
		return err
	}
	defer cp.streams.release(key)
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	w := c.Response()
	extendDeadlines(w, 0, -1)
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if ahead {
		fmt.Fprintf(w, "retry: 1000\n: the revision asked for is ahead of this registry (restored from a backup?); watching from revision %d\n\n", since)
	} else {
		fmt.Fprintf(w, "retry: 1000\n: watching from revision %d\n\n", since)
	}
	w.Flush()

	events := cp.Registry.Watch(ctx, since)
	tick := time.NewTicker(cp.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return nil
			}
			if model != "" && e.Model != model {
				continue
			}
			data, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Revision, e.Kind, data); err != nil {
				return nil
			}
			w.Flush()
		case <-tick.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-ctx.Done():
			return nil
		case <-cp.closing:
			return nil
		}
	}
}

// decodeJSON reads one JSON object from a bounded body and refuses unknown fields
// and trailing data.
// maxTextBytes bounds every free-text field a request carries (a reason): it
// goes into the event log, kept for good and sent to every watcher, so a
// sentence or two is plenty and 900 KB is an attack.
const maxTextBytes = 1024

// checkText refuses a free-text field longer than maxTextBytes, naming it.
func checkText(field, s string) error {
	if len(s) > maxTextBytes {
		return badRequest(fmt.Sprintf("%q is %d bytes: at most %d", field, len(s), maxTextBytes))
	}
	return nil
}

func decodeJSON(c echo.Context, v any) error {
	body := http.MaxBytesReader(c.Response(), c.Request().Body, maxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("body is larger than %d bytes", maxJSONBody)}
		}
		if err == io.EOF {
			return badRequest("body is empty; want a JSON object")
		}
		// A field of the wrong type or an unknown one, in the request's terms.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(explainJSON(err))
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return badRequest("unknown field " + msg)
		}
		return badRequest("malformed JSON: " + err.Error())
	}
	if dec.More() {
		return badRequest("malformed JSON: trailing data after the object")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (cp *ControlPlane) gc(c echo.Context) error {
	var b wire.GCBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	grace := 24 * time.Hour
	if b.Grace != "" {
		d, err := time.ParseDuration(b.Grace)
		if err != nil {
			return badRequest(fmt.Sprintf("grace %q must be a duration such as 24h or 30m", truncate(b.Grace, 40)))
		}
		if d < 0 {
			return badRequest(fmt.Sprintf("grace %s: want 0 or more", d))
		}
		grace = d
	}
	res, err := cp.Registry.GC(c.Request().Context(), grace, b.Apply)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (cp *ControlPlane) canary(c echo.Context) error {
	var b wire.CanaryBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Version < 1 {
		return badRequest("canary needs \"version\": a positive whole number")
	}
	if err := checkText("reason", b.Reason); err != nil {
		return err
	}
	ev, err := cp.Registry.SetCanary(c.Request().Context(), registry.CanaryRequest{
		Model: c.Param("model"), Version: b.Version, Traffic: b.Traffic, Mode: b.Mode,
		ExpectRevision: b.ExpectRevision, Actor: actorOf(c), Reason: b.Reason,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (cp *ControlPlane) clearCanary(c echo.Context) error {
	exp, err := uintQuery(c, "expect_revision")
	if err != nil {
		return err
	}
	if err := checkText("reason", c.QueryParam("reason")); err != nil {
		return err
	}
	ev, err := cp.Registry.SetCanary(c.Request().Context(), registry.CanaryRequest{
		Model: c.Param("model"), Clear: true, ExpectRevision: exp, Actor: actorOf(c), Reason: c.QueryParam("reason"),
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

func (cp *ControlPlane) blend(c echo.Context) error {
	var b wire.BlendBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Weight == nil {
		return badRequest("blend needs \"weight\": a number from 0 to 1")
	}
	if err := checkText("reason", b.Reason); err != nil {
		return err
	}
	ev, err := cp.Registry.SetBlend(c.Request().Context(), registry.BlendRequest{
		Model: c.Param("model"), Weight: *b.Weight, ExpectRevision: b.ExpectRevision, Actor: actorOf(c), Reason: b.Reason,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ev)
}

// Limits on scorer reports (see also monitor's per-report limits). A node
// reports once a second; a report of a few models is tens of kilobytes.
const (
	// maxReportBytes bounds one report's body.
	maxReportBytes = 1 << 20
	// DefaultReportsPerSecond and DefaultReportBurst bound each token's
	// reports: twice what a node reporting every 100 ms sends.
	DefaultReportsPerSecond = 20
	DefaultReportBurst      = 40
)

// report takes a scorer's report: only from a scorer token, only for the node
// bound to that token (bound by its first report unless the token named it),
// rate-limited per token, within the monitor's limits and for what the
// control plane deploys. With auth off (a laptop) there is no token to bind.
func (cp *ControlPlane) report(c echo.Context) error {
	if cp.Monitor == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this control plane runs no monitor"}
	}
	tok, _ := c.Get(tokenKey).(*registry.Token)
	if cp.RequireAuth && (tok == nil || tok.Role != registry.RoleScorer) {
		role := "none"
		if tok != nil {
			role = tok.Role
		}
		return &requestError{status: http.StatusForbidden, code: "forbidden", msg: "reports come only from a scorer token, one per node (`modelctl token create --role scorer --node NAME`); this one has role " + role}
	}
	// A token's rate is checked before its body is read; with auth off, each
	// node's once its name is known.
	if tok != nil {
		if err := cp.reportRate("token " + tok.ID); err != nil {
			return err
		}
	}
	body, err := readBody(c, maxReportBytes)
	if err != nil {
		if status, _ := statusOf(err); status == http.StatusRequestEntityTooLarge {
			return &requestError{status: status, code: "too_large", msg: fmt.Sprintf("report is larger than %d bytes, the limit of one report", maxReportBytes)}
		}
		return err
	}
	var r report.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return badRequest("malformed report: " + err.Error())
	}
	if tok == nil {
		if err := cp.reportRate("node " + truncate(r.Node, registry.MaxNodeName)); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	if err := cp.Monitor.Admit(ctx, r); err != nil {
		return err
	}
	if tok != nil {
		bound := tok.Node
		if bound == "" {
			if bound, err = cp.Registry.BindTokenNode(ctx, tok.ID, r.Node); err != nil {
				return err
			}
		}
		if bound != r.Node {
			return &requestError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf("token %s is bound to node %q; it cannot report for node %q (give each node its own token: `modelctl token create --role scorer --node NAME`)", tok.Name, bound, truncate(r.Node, 200))}
		}
	}
	cp.Monitor.Ingest(r)
	return c.NoContent(http.StatusNoContent)
}

// reportRate takes one report of key's rate, or answers 429 with Retry-After.
func (cp *ControlPlane) reportRate(key string) error {
	wait, ok := cp.reportLimits.allow(key, time.Now(), rate.Limit(cp.ReportsPerSecond), cp.ReportBurst)
	if ok {
		return nil
	}
	return &requestError{status: http.StatusTooManyRequests, code: "too_many_requests", retryAfter: max(1, int(math.Ceil(wait.Seconds()))),
		msg: fmt.Sprintf("more than %g reports a second (burst %d) from one token; a node reports once a second", cp.ReportsPerSecond, cp.ReportBurst)}
}

// rateLimits keeps a token bucket per key, forgetting idle ones: at most
// maxLimited keys at once, so that the keys themselves stay bounded.
type rateLimits struct {
	mu   sync.Mutex
	keys map[string]*limited
}

type limited struct {
	lim  *rate.Limiter
	seen time.Time
}

const maxLimited = 10000

// allow takes one event for key, or says how long until one is allowed.
func (l *rateLimits) allow(key string, now time.Time, every rate.Limit, burst int) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*limited{}
	}
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= maxLimited {
			for k, o := range l.keys {
				// A bucket idle long enough to be full again is as good as new.
				if now.Sub(o.seen) > time.Duration(float64(burst)/float64(every)+1)*time.Second {
					delete(l.keys, k)
				}
			}
			if len(l.keys) >= maxLimited {
				return time.Second, false
			}
		}
		e = &limited{lim: rate.NewLimiter(every, burst)}
		l.keys[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

func (cp *ControlPlane) fleet(c echo.Context) error {
	if cp.Monitor == nil {
		return c.JSON(http.StatusOK, map[string]any{"nodes": []monitor.NodeState{}})
	}
	return c.JSON(http.StatusOK, map[string]any{"nodes": cp.Monitor.Fleet()})
}

func (cp *ControlPlane) health(c echo.Context) error {
	if cp.Monitor == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this control plane runs no monitor"}
	}
	h, err := cp.Monitor.Health(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h)
}

func (cp *ControlPlane) getPolicy(c echo.Context) error {
	m, err := cp.Registry.Model(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m.EffectivePolicy())
}

func (cp *ControlPlane) putPolicy(c echo.Context) error {
	var b wire.PolicyBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	ctx := c.Request().Context()
	m, err := cp.Registry.Model(ctx, c.Param("model"))
	if err != nil {
		return err
	}
	p := m.EffectivePolicy()
	set := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.MaxErrorRate, b.MaxErrorRate)
	set(&p.MaxFallbackRate, b.MaxFallbackRate)
	set(&p.MaxP99Ms, b.MaxP99Ms)
	set(&p.MaxPredPSI, b.MaxPredPSI)
	if b.MinSamples != nil {
		p.MinSamples = *b.MinSamples
	}
	if b.BakeTime != nil {
		p.BakeTime = *b.BakeTime
	}
	if b.FailureLimit != nil {
		p.FailureLimit = *b.FailureLimit
	}
	if b.CorroboratingNodes != nil {
		p.CorroboratingNodes = *b.CorroboratingNodes
	}
	ev, err := cp.Registry.SetPolicy(ctx, m.Name, p, b.ExpectRevision, actorOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"policy": p, "event": ev})
}

func (cp *ControlPlane) listTokens(c echo.Context) error {
	ts, err := cp.Registry.Tokens(c.Request().Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []registry.Token{}
	}
	return c.JSON(http.StatusOK, map[string]any{"tokens": ts})
}

func (cp *ControlPlane) createToken(c echo.Context) error {
	var b wire.TokenBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	t, secret, err := cp.Registry.CreateNodeToken(c.Request().Context(), b.Name, b.Role, b.Node)
	if err != nil {
		return err
	}
	t.Hash = ""
	return c.JSON(http.StatusCreated, wire.TokenCreated{Token: *t, Secret: secret})
}

func (cp *ControlPlane) revokeToken(c echo.Context) error {
	if err := cp.Registry.RevokeToken(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (cp *ControlPlane) whoami(c echo.Context) error {
	if t, ok := c.Get(tokenKey).(*registry.Token); ok {
		return c.JSON(http.StatusOK, t)
	}
	return c.JSON(http.StatusOK, map[string]string{"name": "anonymous", "role": "admin"})
}

// backup streams a consistent snapshot of the registry's bbolt file.
func (cp *ControlPlane) backup(c echo.Context) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/octet-stream")
	w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="registry.db"`)
	extendDeadlines(w, 0, 30*time.Minute)
	w.WriteHeader(http.StatusOK)
	if _, err := cp.Registry.Backup(w); err != nil {
		cp.Logger.Error("backup cut short", "err", err)
	}
	return nil
}

// series answers ?span=15m&step=30s with per-step health per version and arm.
// ?window= is span bounded by what the monitor keeps (its Retain, which the
// answer states): the dashboard's window control asks with it.
func (cp *ControlPlane) series(c echo.Context) error {
	if cp.Monitor == nil {
		return &requestError{status: http.StatusNotFound, code: "not_found", msg: "this control plane runs no monitor"}
	}
	span, step := 15*time.Minute, 30*time.Second
	if c.QueryParam("window") != "" && c.QueryParam("span") != "" {
		return badRequest("give window or span, not both")
	}
	for name, dst := range map[string]*time.Duration{"span": &span, "window": &span, "step": &step} {
		if v := c.QueryParam(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return badRequest(fmt.Sprintf("%s=%q must be a duration such as 15m", name, truncate(v, 20)))
			}
			if d <= 0 {
				return badRequest(fmt.Sprintf("%s=%s: want more than 0", name, d))
			}
			*dst = d
		}
	}
	if c.QueryParam("window") != "" && span > cp.Monitor.Retain {
		return badRequest(fmt.Sprintf("window=%s: the monitor keeps the last %s", span, cp.Monitor.Retain))
	}
	if span/step > 500 {
		return badRequest("span/step is at most 500 points")
	}
	if _, err := cp.Registry.Model(c.Request().Context(), c.Param("model")); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"span": span.String(), "step": step.String(), "retain": cp.Monitor.Retain.String(),
		"series": cp.Monitor.Series(c.Request().Context(), c.Param("model"), span, step)})
}

// recordEvaluation keeps a comparison of versions on the same rows (`modelctl
// eval --record`) as the model's latest; the dashboard's comparison uses it.
func (cp *ControlPlane) recordEvaluation(c echo.Context) error {
	var ev registry.Evaluation
	if err := decodeJSON(c, &ev); err != nil {
		return err
	}
	e, err := cp.Registry.RecordEvaluation(c.Request().Context(), c.Param("model"), ev, actorOf(c))
	if err != nil {
		return err
	}
	m, err := cp.Registry.Model(c.Request().Context(), c.Param("model"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"evaluation": m.Evaluation, "revision": e.Revision})
}
