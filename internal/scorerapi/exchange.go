package scorerapi

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"
)

// exchange is one request and its answer: the handlers are written against it,
// and fastExchange carries it over fasthttp (the tests and benchmarks also
// drive handlers through it in process).
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

// fastExchange carries an exchange over fasthttp. The server streams bodies
// (Server sets StreamRequestBody): body reads one into a pooled buffer as it
// arrives, so a declared Content-Length reserves nothing until its bytes come.
type fastExchange struct {
	ctx *fasthttp.RequestCtx
	buf *bytes.Buffer
	// read: the body was read to its end.
	read bool
}

func (x *fastExchange) header(name string) string { return string(x.ctx.Request.Header.Peek(name)) }

func (x *fastExchange) body(limit int64) ([]byte, error) {
	n := int64(x.ctx.Request.Header.ContentLength())
	if n > limit {
		x.linger()
		return nil, tooLarge(limit)
	}
	stream := x.ctx.RequestBodyStream()
	if stream == nil {
		// Read whole by fasthttp (a server that does not stream, or no body).
		b := x.ctx.Request.Body()
		if int64(len(b)) > limit {
			return nil, tooLarge(limit)
		}
		x.read = true
		return b, nil
	}
	if x.buf == nil {
		x.buf = bufPool.Get().(*bytes.Buffer)
	}
	x.buf.Reset()
	// One read, no regrowth, for bodies that say their length, up to
	// trustedGrow: past that the buffer grows with what arrives, never with
	// what a client declares (500 clients declaring 1.3 MB and sending a byte
	// each must not reserve 650 MB).
	if n > 0 {
		x.buf.Grow(int(min(n, trustedGrow)) + 1)
	}
	if _, err := x.buf.ReadFrom(io.LimitReader(stream, limit+1)); err != nil {
		return nil, badRequest("reading the body: " + err.Error())
	}
	if int64(x.buf.Len()) > limit {
		x.linger()
		return nil, tooLarge(limit)
	}
	x.read = true
	return x.buf.Bytes(), nil
}

// linger lets the client read the answer before the connection closes: the
// request was not read to its end.
func (x *fastExchange) linger() {
	x.ctx.SetConnectionClose()
	if c, ok := x.ctx.Conn().(*freshConn); ok {
		c.linger.Store(true)
	}
}

func (x *fastExchange) release() {
	if x.buf != nil {
		if x.buf.Cap() <= 4<<20 {
			bufPool.Put(x.buf)
		}
		x.buf = nil
	}
}

// context is never done: fasthttp's request context is done as soon as the
// server's shutdown begins, which would fail requests waiting for a turn that a
// graceful close must let finish (their budget still bounds the wait).
func (x *fastExchange) context() context.Context { return context.Background() }

func (x *fastExchange) setHeader(name, value string) { x.ctx.Response.Header.Set(name, value) }

// json writes v with its trailing newline, as encoding/json's Encoder does.
func (x *fastExchange) json(status int, v any) error {
	var buf [1 << 10]byte
	b, err := AppendJSON(buf[:0], v)
	if err != nil {
		return err
	}
	x.ctx.Response.SetBody(b)
	x.ctx.SetContentType(mimeJSON)
	x.ctx.SetStatusCode(status)
	return nil
}

const mimeJSON = "application/json"

func (x *fastExchange) blob(status int, ct string, b []byte) error {
	if ct != "" {
		x.ctx.SetContentType(ct)
	}
	x.ctx.SetStatusCode(status)
	x.ctx.SetBody(b)
	return nil
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
			msg: fmt.Sprintf("Content-Encoding %q: the scorer reads gzip, deflate or none", clip(enc, 40))}
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
