package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/labstack/echo/v4"
)

// explainJSON says what is wrong with a body encoding/json refused, in the
// request's terms.
func explainJSON(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	if te.Field == "" {
		return "the body must be a JSON object, not " + article(te.Value)
	}
	t := te.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var want string
	switch t.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "an integer"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Slice:
		want = "an array"
	case reflect.Struct:
		want = "an object"
	default:
		return err.Error()
	}
	return fmt.Sprintf("%s must be %s, not %s", te.Field, want, te.Value)
}

// article names a JSON value kind as encoding/json reports it ("array",
// "object", "string", "number", "bool") with its article.
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func readBody(c echo.Context, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if err := readBodyInto(c, &buf, limit); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func bodyTooLargeMsg(limit int64) string { return fmt.Sprintf("body is larger than %d bytes", limit) }

// trustedGrow is how much of a declared Content-Length a body buffer reserves
// before the bytes arrive: a 256-row binary request fits.
const trustedGrow = 64 << 10

// readBodyInto reads the request body into buf (reset first), at most limit bytes.
func readBodyInto(c echo.Context, buf *bytes.Buffer, limit int64) error {
	buf.Reset()
	// One read, no regrowth, for bodies that say their length, up to
	// trustedGrow: past that the buffer grows with what arrives, never with
	// what a client declares (500 clients declaring 1.3 MB and sending a byte
	// each must not reserve 650 MB).
	if n := c.Request().ContentLength; n > 0 && n <= limit {
		buf.Grow(int(min(n, trustedGrow)) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(c.Response(), c.Request().Body, limit)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(limit)
		}
		return err
	}
	return nil
}

// tooLarge is the answer to a body over limit bytes.
func tooLarge(limit int64) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: bodyTooLargeMsg(limit)}
}
