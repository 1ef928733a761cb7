package api

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// FastHandler is what a server on fasthttp serves (see NewFastServer).
type FastHandler struct {
	Serve fasthttp.RequestHandler
	// Error answers a request that could not be read: too large, malformed or
	// too slow.
	Error func(*fasthttp.RequestCtx, error)
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes int64
}

// Fast is the scorer on fasthttp: POST /v1/score and POST /v2/models/{m}/infer
// run directly on it, every other route through the echo routes of Handler, so
// both answer alike. net/http by itself, only reading a 256-row request and
// writing an answer, costs this machine more than half what the model's run
// does, which caps scoring on it near 60% of the raw ONNX Runtime loop (make
// bench measures both).
func (s *Scorer) Fast() *FastHandler {
	rest := fasthttpadaptor.NewFastHTTPHandler(s.Handler())
	return &FastHandler{
		// The handlers refuse bodies over s.MaxBodyBytes themselves; fasthttp
		// reads up to drainBytes more first, as net/http drains a refused body,
		// so that the client gets its 413 rather than a reset connection while
		// it is still sending.
		MaxBodyBytes: s.MaxBodyBytes + drainBytes,
		Error:        s.fastError,
		Serve: func(ctx *fasthttp.RequestCtx) {
			if ctx.IsPost() {
				if path := ctx.Path(); string(path) == "/v1/score" {
					s.serveFast(ctx, s.scoreKeyed)
					return
				} else if model, version, ok := inferModel(path); ok {
					s.serveFast(ctx, func(x exchange) error { return s.inferKeyed(x, model, version) })
					return
				}
			}
			rest(ctx)
		},
	}
}

// drainBytes is how far past its limit a body is read to answer it cleanly.
const drainBytes = 256 << 10

// inferModel is the model, and the version ("" for none), named by an
// inference path: /v2/models/{m}/infer or /v2/models/{m}/versions/{v}/infer.
// An empty version (…/versions//infer) is none, as echo's routes take it.
func inferModel(path []byte) (model, version string, ok bool) {
	const prefix, suffix = "/v2/models/", "/infer"
	if !bytes.HasPrefix(path, []byte(prefix)) || !bytes.HasSuffix(path, []byte(suffix)) || len(path) <= len(prefix)+len(suffix) {
		return "", "", false
	}
	m, v, _ := bytes.Cut(path[len(prefix):len(path)-len(suffix)], []byte("/versions/"))
	if len(m) == 0 || bytes.IndexByte(m, '/') >= 0 || bytes.IndexByte(v, '/') >= 0 {
		return "", "", false
	}
	return string(m), string(v), true
}

// serveFast runs h and answers the error it returns (or its panic) the way
// echo's error handler would.
func (s *Scorer) serveFast(ctx *fasthttp.RequestCtx, h func(exchange) error) {
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error("handler panicked", "path", string(ctx.Path()), "panic", p, "stack", string(debug.Stack()))
			s.writeFastError(ctx, fmt.Errorf("panic: %v", p))
		}
	}()
	if err := h(fastExchange{ctx}); err != nil {
		s.writeFastError(ctx, err)
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
	fastExchange{ctx}.json(status, body)
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
		oipError(fastExchange{ctx}, e.status, e.msg)
		return
	}
	s.writeFastError(ctx, e)
}
