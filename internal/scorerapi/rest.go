package scorerapi

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/modelops/modelops/internal/wire"
)

// The scorer's REST routes run on fasthttp, one HTTP stack, without echo or an
// adaptor: the cost bench (docs/benchmarks.md) measured echo on net/http
// costing about 50% more CPU than fasthttp for the same single-row request,
// past issue 19's 20% rule. The control plane stays on echo (internal/api).

// Handler is what Server serves: the scorer's routes, the answer to a request
// fasthttp could not read, and the bound on bodies fasthttp lets through.
type Handler struct {
	Serve fasthttp.RequestHandler
	// Error answers a request that could not be read: malformed or too slow.
	Error func(*fasthttp.RequestCtx, error)
	// MaxBodyBytes is what fasthttp lets a body declare; the handlers bound
	// what they read themselves (Scorer.MaxBodyBytes).
	MaxBodyBytes int64
}

// Handler returns the scorer's routes: /healthz, /readyz, /metrics,
// /v1/score, /v1/feedback, /v1/status and the Open Inference Protocol v2
// (server and model health and metadata, inference, the repository index).
// HEAD is answered as GET without the body.
func (s *Scorer) Handler() *Handler {
	return &Handler{
		// The handlers refuse bodies over s.MaxBodyBytes themselves, as they
		// arrive; past drainBytes more, fasthttp refuses a declared length.
		MaxBodyBytes: s.MaxBodyBytes + drainBytes,
		Error:        s.fastError,
		Serve:        s.serve,
	}
}

// drainBytes is how far past its limit a body may declare itself before
// fasthttp, rather than the handler, refuses it.
const drainBytes = 256 << 10

// route is a handler and the method it answers (GET answers HEAD too).
type route struct {
	post bool
	h    func(exchange) error
}

func (s *Scorer) serve(ctx *fasthttp.RequestCtx) {
	r, known := s.route(ctx.Path())
	switch {
	case !known:
		s.serveFast(ctx, func(exchange) error { return notFound })
	case r.post != ctx.IsPost() || (!r.post && !ctx.IsGet() && !ctx.IsHead()):
		s.serveFast(ctx, func(exchange) error { return methodNotAllowed })
	default:
		s.serveFast(ctx, r.h)
	}
}

var (
	notFound         = &requestError{status: http.StatusNotFound, code: "not_found", msg: "Not Found"}
	methodNotAllowed = &requestError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: "Method Not Allowed"}
)

func (s *Scorer) route(path []byte) (route, bool) {
	switch string(path) {
	case "/v1/score":
		return route{post: true, h: s.scoreKeyed}, true
	case "/v1/feedback":
		return route{post: true, h: s.feedbackKeyed}, true
	case "/v1/status":
		return route{h: s.status}, true
	case "/healthz":
		return route{h: func(x exchange) error { return x.json(http.StatusOK, map[string]string{"status": "ok"}) }}, true
	case "/readyz":
		return route{h: s.ready}, true
	case "/metrics":
		return route{h: s.metrics}, true
	case "/v2":
		return route{h: s.oipServer}, true
	case "/v2/repository/index":
		return route{post: true, h: s.repositoryIndex}, true
	case "/v2/health/live":
		return route{h: func(x exchange) error { return x.json(http.StatusOK, map[string]bool{"live": true}) }}, true
	case "/v2/health/ready":
		return route{h: func(x exchange) error {
			ok, _ := s.Ready()
			status := http.StatusOK
			if !ok {
				status = http.StatusServiceUnavailable
			}
			return x.json(status, map[string]bool{"ready": ok})
		}}, true
	}
	model, version, action, ok := modelRoute(path)
	if !ok {
		return route{}, false
	}
	switch action {
	case "infer":
		return route{post: true, h: func(x exchange) error { return s.inferKeyed(x, model, version) }}, true
	case "ready":
		return route{h: func(x exchange) error { return s.oipModelReady(x, model, version) }}, true
	default:
		return route{h: func(x exchange) error { return s.oipMetadata(x, model, version) }}, true
	}
}

// modelRoute reads a model's path, /v2/models/{m}[/versions/{v}][/ready|/infer]:
// the model, the version ("" for none; an empty one, …/versions//infer, is
// none too) and the action ("" for metadata).
func modelRoute(path []byte) (model, version, action string, ok bool) {
	rest, ok := bytes.CutPrefix(path, []byte("/v2/models/"))
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(string(rest), "/")
	model, parts = parts[0], parts[1:]
	switch {
	case len(parts) == 2 && parts[0] == "versions" && (parts[1] == "ready" || parts[1] == "infer"):
		// …/versions//infer, its slashes merged by fasthttp: versions are
		// numbers, so "infer" is the action.
		parts = parts[1:]
	case len(parts) >= 2 && parts[0] == "versions":
		version, parts = parts[1], parts[2:]
	}
	switch {
	case model == "":
		return "", "", "", false
	case len(parts) == 0:
		return model, version, "", true
	case len(parts) == 1 && (parts[0] == "ready" || parts[0] == "infer"):
		return model, version, parts[0], true
	}
	return "", "", "", false
}

// inferModel is the model, and the version ("" for none), named by an
// inference path: /v2/models/{m}/infer or /v2/models/{m}/versions/{v}/infer.
func inferModel(path []byte) (model, version string, ok bool) {
	m, v, action, ok := modelRoute(path)
	return m, v, ok && action == "infer"
}

// metrics is GET /metrics: the scorer's registry in Prometheus' text format.
func (s *Scorer) metrics(x exchange) error {
	mfs, err := s.Metrics().Registry.Gather()
	if err != nil {
		return err
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return x.blob(http.StatusOK, string(format), b.Bytes())
}

// serveFast runs h and answers the error it returns (or its panic) in the
// error shape of the scorer.
func (s *Scorer) serveFast(ctx *fasthttp.RequestCtx, h func(exchange) error) {
	x := &fastExchange{ctx: ctx}
	defer x.release()
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error("handler panicked", "path", string(ctx.Path()), "panic", p, "stack", string(debug.Stack()))
			s.writeFastError(ctx, fmt.Errorf("panic: %v", p))
		}
	}()
	if err := h(x); err != nil {
		s.writeFastError(ctx, err)
	}
	if !x.read && ctx.Request.Header.ContentLength() != 0 && ctx.RequestBodyStream() != nil {
		// A body left unread (a refusal before it, or a route that takes
		// none) would be read as the next request: close after the answer.
		x.linger()
	}
}

func (s *Scorer) writeFastError(ctx *fasthttp.RequestCtx, err error) {
	status, retryAfter, body := errorReply(s.Logger, err, string(ctx.Method()), string(ctx.Path()))
	ctx.Response.Reset()
	if retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if ctx.IsHead() {
		ctx.SetStatusCode(status)
		return
	}
	(&fastExchange{ctx: ctx}).json(status, body)
}

// fastError answers a request fasthttp could not read, in the shape its route
// answers errors in.
func (s *Scorer) fastError(ctx *fasthttp.RequestCtx, err error) {
	var e *requestError
	var ne net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = tooLarge(s.MaxBodyBytes)
	case errors.As(err, &small):
		e = &requestError{status: http.StatusRequestHeaderFieldsTooLarge, code: "too_large", msg: "request line and headers are too large"}
	case errors.As(err, &ne) && ne.Timeout():
		e = &requestError{status: http.StatusRequestTimeout, code: "timeout", msg: "the request took too long to arrive"}
	default:
		e = &requestError{status: http.StatusBadRequest, code: "invalid_request", msg: "malformed request: " + err.Error()}
	}
	s.reject(e)
	// The request may not have been read to its end: let the client read this
	// answer before the connection closes.
	if c, ok := ctx.Conn().(*freshConn); ok {
		c.linger.Store(true)
	}
	if _, _, ok := inferModel(ctx.Path()); ok {
		ctx.Response.Reset()
		oipError(&fastExchange{ctx: ctx}, e.status, e.msg)
		return
	}
	s.writeFastError(ctx, e)
}

// requestError is a handler's own bad-input error with a status of its choosing.
type requestError struct {
	status     int
	code       string
	msg        string
	retryAfter int // seconds; set on 429 and 503
}

func (e *requestError) Error() string { return e.msg }

func badRequest(msg string) error {
	return &requestError{status: http.StatusBadRequest, code: "invalid_request", msg: msg}
}

// errorReply is how err is answered: its status, its Retry-After in seconds
// (0 for none) and its body. It logs internal errors.
func errorReply(log *slog.Logger, err error, method, path string) (int, int, wire.ErrorBody) {
	status, code, msg, retryAfter := http.StatusInternalServerError, "internal", err.Error(), 0
	var re *requestError
	if errors.As(err, &re) {
		status, code, retryAfter = re.status, re.code, re.retryAfter
	}
	if status >= 500 {
		log.Error("request failed", "method", method, "path", path, "err", err)
		if status == http.StatusInternalServerError {
			msg = "internal error: " + msg
		}
	}
	return status, retryAfter, wire.ErrorBody{Error: wire.Error{Code: code, Message: msg}}
}

// tooLarge is the answer to a body over limit bytes.
func tooLarge(limit int64) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: bodyTooLargeMsg(limit)}
}

// bearerOf is the token of an Authorization header's value.
func bearerOf(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// clip shortens s to n bytes for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func bodyTooLargeMsg(limit int64) string { return fmt.Sprintf("body is larger than %d bytes", limit) }
