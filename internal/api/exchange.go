package api

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/valyala/fasthttp"
)

// exchange is one request and its answer, whichever HTTP server carries it: the
// scoring and inference handlers are written once against it and served both by
// echo (Scorer.Handler) and directly on fasthttp (Scorer.Fast).
type exchange interface {
	header(name string) string
	// body is the whole request body, at most limit bytes; it stays valid until
	// the handler returns.
	body(limit int64) ([]byte, error)
	context() context.Context
	setHeader(name, value string)
	json(status int, v any) error
	blob(status int, contentType string, b []byte) error
}

// echoExchange carries an exchange over echo and net/http.
type echoExchange struct {
	c   echo.Context
	buf *bytes.Buffer
}

func (x *echoExchange) header(name string) string { return x.c.Request().Header.Get(name) }

func (x *echoExchange) body(limit int64) ([]byte, error) {
	if x.buf == nil {
		x.buf = bufPool.Get().(*bytes.Buffer)
	}
	if err := readBodyInto(x.c, x.buf, limit); err != nil {
		return nil, err
	}
	return x.buf.Bytes(), nil
}

func (x *echoExchange) context() context.Context                   { return x.c.Request().Context() }
func (x *echoExchange) setHeader(name, value string)               { x.c.Response().Header().Set(name, value) }
func (x *echoExchange) json(status int, v any) error               { return x.c.JSON(status, v) }
func (x *echoExchange) blob(status int, ct string, b []byte) error { return x.c.Blob(status, ct, b) }

func (x *echoExchange) release() {
	if x.buf != nil {
		bufPool.Put(x.buf)
		x.buf = nil
	}
}

// viaEcho serves h as an echo handler.
func viaEcho(h func(exchange) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		x := &echoExchange{c: c}
		defer x.release()
		return h(x)
	}
}

// fastExchange carries an exchange over fasthttp, which has read the whole body
// (bounded by the server's MaxRequestBodySize) before the handler runs.
type fastExchange struct{ ctx *fasthttp.RequestCtx }

func (x fastExchange) header(name string) string { return string(x.ctx.Request.Header.Peek(name)) }

func (x fastExchange) body(limit int64) ([]byte, error) {
	b := x.ctx.PostBody()
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}

// context is never done: fasthttp's request context is done as soon as the
// server's shutdown begins, which would fail requests waiting for a turn that a
// graceful close must let finish (their budget still bounds the wait).
func (x fastExchange) context() context.Context { return context.Background() }

func (x fastExchange) setHeader(name, value string) { x.ctx.Response.Header.Set(name, value) }

// json writes v the way echo's c.JSON does (the encoder's trailing newline
// included), so both servers answer byte for byte alike.
func (x fastExchange) json(status int, v any) error {
	var buf [1 << 10]byte
	b, err := AppendJSON(buf[:0], v)
	if err != nil {
		return err
	}
	x.ctx.Response.SetBody(b)
	x.ctx.SetContentType(echo.MIMEApplicationJSON)
	x.ctx.SetStatusCode(status)
	return nil
}

func (x fastExchange) blob(status int, ct string, b []byte) error {
	x.ctx.SetContentType(ct)
	x.ctx.SetStatusCode(status)
	x.ctx.SetBody(b)
	return nil
}

// tooLarge is the answer to a body over limit bytes.
func tooLarge(limit int64) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: bodyTooLargeMsg(limit)}
}

// requestBody is the request's body, decompressed when its Content-Encoding is
// gzip or deflate (as Triton's clients send it with request compression on); at
// most limit bytes, compressed and decompressed alike, so a small bomb is a 413.
func requestBody(x exchange, limit int64) ([]byte, error) {
	b, err := x.body(limit)
	if err != nil {
		return nil, err
	}
	enc := strings.ToLower(strings.TrimSpace(x.header("Content-Encoding")))
	var r io.ReadCloser
	switch enc {
	case "", "identity":
		return b, nil
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(bytes.NewReader(b))
	case "deflate":
		r, err = zlib.NewReader(bytes.NewReader(b))
	default:
		return nil, &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_encoding",
			msg: fmt.Sprintf("Content-Encoding %q: the scorer reads gzip, deflate or none", truncate(enc, 40))}
	}
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Content-Encoding %s: the body does not decompress: %v", enc, err))
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Content-Encoding %s: the body does not decompress: %v", enc, err))
	}
	if int64(len(out)) > limit {
		return nil, tooLarge(limit)
	}
	return out, nil
}
