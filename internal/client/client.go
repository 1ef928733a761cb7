// Package client is the Go client of the control plane's /api/v1, used by the
// modelctl verbs and by scorer nodes.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/predlog"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// Error is an error answer from the server.
type Error struct {
	// Server is the base URL that answered: with several control planes about
	// (contexts, environment, flags), an error says which one refused.
	Server  string
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Server == "" {
		return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: %s (HTTP %d %s)", e.Server, e.Message, e.Status, e.Code)
}

// StatusOf returns the HTTP status of an *Error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Client talks to a control plane: one, or several replicas of it (a list of
// URLs), in which case a request that cannot reach one goes to the next.
type Client struct {
	// BaseURL is the first control plane of the list.
	BaseURL string
	HTTP    *http.Client
	// Token is the bearer token sent with every request (MODELCTL_TOKEN).
	Token string

	mu sync.Mutex
	// urls are the control planes in order, cur the one requests go to: it
	// stays there until that one cannot be reached.
	urls []string
	cur  int
}

// CheckBaseURL returns an error unless raw is an http or https URL with a host,
// or a comma-separated list of them: "localhost:8080" parses as a URL of
// scheme "localhost", and would fail only when first used, with "unsupported
// protocol scheme".
func CheckBaseURL(raw string) error {
	for _, one := range strings.Split(raw, ",") {
		one = strings.TrimSpace(one)
		u, err := url.Parse(one)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q: want an http:// or https:// URL, such as http://127.0.0.1:8080, or a comma-separated list of them", one)
		}
	}
	return nil
}

// New returns a client for baseURL (e.g. http://127.0.0.1:8080), or for a
// comma-separated list of replicas of one control plane
// (http://cp1:8080,http://cp2:8080): requests go to the first that answers
// and stay there until it cannot be reached.
func New(baseURL string) *Client {
	var urls []string
	for _, one := range strings.Split(baseURL, ",") {
		if one = strings.TrimRight(strings.TrimSpace(one), "/"); one != "" {
			urls = append(urls, one)
		}
	}
	if len(urls) == 0 {
		urls = []string{""}
	}
	return &Client{BaseURL: urls[0], HTTP: &http.Client{}, urls: urls}
}

// URLs returns the control planes of the client, in order.
func (c *Client) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.urls) == 0 {
		return []string{c.BaseURL}
	}
	return append([]string(nil), c.urls...)
}

// Current returns the control plane requests go to now.
func (c *Client) Current() string {
	base, _, _ := c.current()
	return base
}

// current returns the base URL requests go to, its place in the list and the
// list's length.
func (c *Client) current() (string, int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.urls) == 0 {
		return c.BaseURL, 0, 1
	}
	return c.urls[c.cur], c.cur, len(c.urls)
}

// failed moves requests on from the control plane at place i, unless another
// request moved them already.
func (c *Client) failed(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.urls) > 1 && c.cur == i {
		c.cur = (i + 1) % len(c.urls)
	}
}

// url is path on the control plane requests go to now; send moves a request
// to another one when it cannot reach this one.
func (c *Client) url(path string, q url.Values) string {
	base, _, _ := c.current()
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: %s %s: decoding the answer: %w", c.Current(), method, path, err)
	}
	return nil
}

// retryable tells whether a request that failed with err may go to another
// control plane: one never sent (the connection was refused) always may, a
// read whatever broke; a change that may have reached the server may not (the
// caller sees the error, and the next request goes to the next one).
func retryable(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false // a stream that cannot be sent twice
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return req.Method == http.MethodGet || req.Method == http.MethodHead
}

// moved returns req sent to base instead of from.
func moved(req *http.Request, from, base string) (*http.Request, error) {
	rest, ok := strings.CutPrefix(req.URL.String(), from)
	if !ok {
		return nil, fmt.Errorf("request %s is not on %s", req.URL, from)
	}
	u, err := url.Parse(base + rest)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.URL, r.Host = u, ""
	if req.GetBody != nil {
		if r.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// send performs req and turns non-2xx answers into *Error. A control plane
// out of reach passes the request to the next of the list, when it is safe to
// send it again, each at most once.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	base, i, n := c.current()
	var resp *http.Response
	var err error
	for tried := 1; ; tried++ {
		resp, err = c.HTTP.Do(req)
		if err == nil {
			break
		}
		err = fmt.Errorf("control plane at %s: %w", base, err)
		c.failed(i)
		if tried >= n || req.Context().Err() != nil || !retryable(req, err) {
			return nil, err
		}
		next, j, _ := c.current()
		r, merr := moved(req, base, next)
		if merr != nil {
			return nil, err
		}
		req, base, i = r, next, j
	}
	return c.answer(req, resp, base)
}

// answer turns a non-2xx answer from base into *Error.
func (c *Client) answer(req *http.Request, resp *http.Response, base string) (*http.Response, error) {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb wire.ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Message != "" {
		msg := eb.Error.Message
		if resp.StatusCode == http.StatusNotFound && msg == http.StatusText(http.StatusNotFound) {
			// No such route at all, not a missing model or version: the base URL
			// is most likely not a control plane (a scorer's, say).
			msg = fmt.Sprintf("no %s %s here: is it a modelops control plane? (a scorer listens on :8081 by default, the control plane on :8080)", req.Method, req.URL.Path)
		}
		return nil, &Error{Server: base, Status: resp.StatusCode, Code: eb.Error.Code, Message: msg}
	}
	return nil, &Error{Server: base, Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(raw))}
}

// Models lists every model.
func (c *Client) Models(ctx context.Context) ([]registry.Model, error) {
	var out struct {
		Models []registry.Model `json:"models"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/models", nil, nil, &out)
	return out.Models, err
}

// Model returns a model with its versions.
func (c *Client) Model(ctx context.Context, name string) (*wire.ModelView, error) {
	var out wire.ModelView
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Version returns one version with its card.
func (c *Client) Version(ctx context.Context, model string, v int) (*registry.Version, error) {
	var out registry.Version
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/models/%s/versions/%d", url.PathEscape(model), v), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Deployment returns what a scorer must serve for a model.
func (c *Client) Deployment(ctx context.Context, model string) (*registry.Deployment, error) {
	var out registry.Deployment
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(model)+"/deployment", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Promote points production at version.
func (c *Client) Promote(ctx context.Context, model string, body wire.AliasBody) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/promote", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rollback moves production back (to body.Version when set).
func (c *Client) Rollback(ctx context.Context, model string, body wire.AliasBody) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/rollback", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetCanary points the candidate alias at a version.
func (c *Client) SetCanary(ctx context.Context, model string, body wire.CanaryBody) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/canary", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClearCanary removes the candidate alias.
func (c *Client) ClearCanary(ctx context.Context, model string, expectRevision uint64, reason string) (*registry.Event, error) {
	q := url.Values{}
	if expectRevision > 0 {
		q.Set("expect_revision", strconv.FormatUint(expectRevision, 10))
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	var out registry.Event
	if err := c.do(ctx, http.MethodDelete, "/api/v1/models/"+url.PathEscape(model)+"/canary", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetBlend sets the model's blend weight.
func (c *Client) SetBlend(ctx context.Context, model string, body wire.BlendBody) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/blend", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Health returns the monitor's view of a model.
func (c *Client) Health(ctx context.Context, model string) (*monitor.ModelHealth, error) {
	var out monitor.ModelHealth
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(model)+"/health", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Fleet returns the scorer nodes that report.
func (c *Client) Fleet(ctx context.Context) ([]monitor.NodeState, error) {
	var out struct {
		Nodes []monitor.NodeState `json:"nodes"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/fleet", nil, nil, &out)
	return out.Nodes, err
}

// Leader says which replica runs the monitor; nil for a single control plane.
func (c *Client) Leader(ctx context.Context) (*wire.LeaderInfo, error) {
	var out wire.LeaderInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/leader", nil, nil, &out)
	if StatusOf(err) == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Policy returns a model's rollback policy.
func (c *Client) Policy(ctx context.Context, model string) (*registry.Policy, error) {
	var out registry.Policy
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(model)+"/policy", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetPolicy changes some of a model's policy settings.
func (c *Client) SetPolicy(ctx context.Context, model string, body wire.PolicyBody) (*registry.Policy, error) {
	var out struct {
		Policy registry.Policy `json:"policy"`
	}
	if err := c.do(ctx, http.MethodPut, "/api/v1/models/"+url.PathEscape(model)+"/policy", nil, body, &out); err != nil {
		return nil, err
	}
	return &out.Policy, nil
}

// CreateToken makes a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, name, role string) (*wire.TokenCreated, error) {
	return c.CreateTokenFor(ctx, wire.TokenBody{Name: name, Role: role})
}

// CreateTokenFor makes a token as b says (a scorer token may name its node);
// its secret is in the answer only.
func (c *Client) CreateTokenFor(ctx context.Context, b wire.TokenBody) (*wire.TokenCreated, error) {
	var out wire.TokenCreated
	if err := c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Tokens lists tokens (without secrets).
func (c *Client) Tokens(ctx context.Context) ([]registry.Token, error) {
	var out struct {
		Tokens []registry.Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes a token by id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}

// Backup streams a consistent copy of the registry's bbolt file into w.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/api/v1/backup", nil), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// GC lists (and with apply deletes) blobs no version references.
func (c *Client) GC(ctx context.Context, body wire.GCBody) (*registry.GCResult, error) {
	var out registry.GCResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/gc", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Events returns history after since, for one model when model is set.
func (c *Client) Events(ctx context.Context, model string, since uint64, limit int) ([]registry.Event, error) {
	return c.events(ctx, model, since, "limit", limit)
}

// LatestEvents returns the last n events after revision since (0: from the
// start), in revision order: a model's recent history, however long it is.
func (c *Client) LatestEvents(ctx context.Context, model string, since uint64, n int) ([]registry.Event, error) {
	return c.events(ctx, model, since, "last", n)
}

func (c *Client) events(ctx context.Context, model string, since uint64, countParam string, n int) ([]registry.Event, error) {
	q := url.Values{}
	if model != "" {
		q.Set("model", model)
	}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	if n > 0 {
		q.Set(countParam, strconv.Itoa(n))
	}
	var out struct {
		Events []registry.Event `json:"events"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/events", q, nil, &out)
	return out.Events, err
}

// Artifact opens a version's artifact; the caller verifies the digest (the
// X-Artifact-Sha256 header and the version record both state it).
func (c *Client) Artifact(ctx context.Context, model string, v int) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(fmt.Sprintf("/api/v1/models/%s/versions/%d/artifact", url.PathEscape(model), v), nil), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// PushOptions describe one push.
type PushOptions struct {
	Model string
	// ArtifactPath is the .onnx file.
	ArtifactPath string
	// Card is the model card JSON (may be nil).
	Card []byte
	// Reason is why, kept with the version (may be empty).
	Reason string
	// Progress, when set, is called as bytes go out.
	Progress func(sent, total int64)
}

// Push hashes the file, then streams it with its card as multipart.
func (c *Client) Push(ctx context.Context, o PushOptions) (*wire.PushResponse, error) {
	digest, size, err := FileDigest(o.ArtifactPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(o.ArtifactPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	// The multipart framing around the artifact is laid out first, so that the
	// request states its length: a control plane refuses one too large for it
	// at once, before a byte of the artifact is sent.
	var head, tail bytes.Buffer
	mw := multipart.NewWriter(&head)
	if len(o.Card) > 0 {
		w, err := mw.CreateFormFile("card", "card.json")
		if err != nil {
			return nil, err
		}
		w.Write(o.Card)
	}
	if _, err := mw.CreateFormFile("artifact", "model.onnx"); err != nil {
		return nil, err
	}
	contentType := mw.FormDataContentType()
	// Close writes only the closing boundary, after the artifact.
	tailWriter := multipart.NewWriter(&tail)
	tailWriter.SetBoundary(mw.Boundary())
	tailWriter.Close()
	var src io.Reader = f
	if o.Progress != nil {
		src = &progressReader{r: f, total: size, fn: o.Progress}
	}
	body := io.MultiReader(bytes.NewReader(head.Bytes()), io.LimitReader(src, size), bytes.NewReader(tail.Bytes()))
	q := url.Values{"sha256": {digest}}
	if o.Reason != "" {
		q.Set("reason", o.Reason)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/api/v1/models/"+url.PathEscape(o.Model)+"/versions", q), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(head.Len()) + size + int64(tail.Len())
	req.Header.Set("Content-Type", contentType)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out wire.PushResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: push: decoding the answer: %w", c.Current(), err)
	}
	return &out, nil
}

// FileDigest returns the sha256 (hex) and size of a file.
func FileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type progressReader struct {
	r     io.Reader
	sent  int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += int64(n)
	p.fn(p.sent, p.total)
	return n, err
}

// Watch follows the event stream from revision since and calls fn for each event,
// until ctx is done or the stream breaks; it returns the last revision seen, so the
// caller can resume from it.
func (c *Client) Watch(ctx context.Context, model string, since uint64, fn func(registry.Event)) (uint64, error) {
	q := url.Values{}
	if model != "" {
		q.Set("model", model)
	}
	q.Set("since", strconv.FormatUint(since, 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/api/v1/watch", q), nil)
	if err != nil {
		return since, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(req)
	if err != nil {
		return since, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				var e registry.Event
				if err := json.Unmarshal(data, &e); err != nil {
					return since, fmt.Errorf("watch: bad event: %w", err)
				}
				data = data[:0]
				fn(e)
				since = e.Revision
			}
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimSpace(line[5:])...)
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return since, fmt.Errorf("watch: %w", err)
	}
	if ctx.Err() != nil {
		return since, ctx.Err()
	}
	return since, io.ErrUnexpectedEOF
}

// Backoff returns the wait before retry n (0-based): 100 ms doubling to max.
func Backoff(n int, max time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// ShipLog sends a prediction log batch (a scorer's, with its scorer token).
// The answer comes once the control plane has stored every row and outcome;
// an error means the batch may be shipped again (a repeat is stored once).
func (c *Client) ShipLog(ctx context.Context, b *predlog.Batch) (*predlog.Stored, error) {
	var out predlog.Stored
	if err := c.do(ctx, http.MethodPost, "/api/v1/logs", nil, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Report posts a scorer's report (monitor.Report as JSON) to
// /api/v1/reports: the replica that takes it forwards it to the monitor's.
func (c *Client) Report(ctx context.Context, report []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/api/v1/reports", nil), bytes.NewReader(report))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// ExportOptions select the rows of an export.
type ExportOptions struct {
	Since, Until     time.Time
	Version          int
	WithOutcomesOnly bool
}

// Export streams a model's logged rows joined with their outcomes, calling fn
// for each, and returns the server's summary. An export cut short (by the
// server or the connection) is an error: only a summary line ends it.
func (c *Client) Export(ctx context.Context, model string, o ExportOptions, fn func(predlog.ExportRow) error) (*predlog.ExportSummary, error) {
	q := url.Values{}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	if o.Version != 0 {
		q.Set("version", strconv.Itoa(o.Version))
	}
	if o.WithOutcomesOnly {
		q.Set("with_outcomes_only", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/api/v1/models/"+url.PathEscape(model)+"/export", q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var line predlog.ExportLine
		if err := dec.Decode(&line); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%s: export %s: %w (the export is incomplete)", c.Current(), model, err)
		}
		switch {
		case line.Error != "":
			return nil, fmt.Errorf("%s: export %s stopped: %s", c.Current(), model, line.Error)
		case line.End != nil:
			return line.End, nil
		case line.ExportRow != nil:
			if err := fn(*line.ExportRow); err != nil {
				return nil, err
			}
		}
	}
}

// RecordEvaluation keeps an evaluation on the same rows as the model's latest.
func (c *Client) RecordEvaluation(ctx context.Context, model string, ev registry.Evaluation) (*registry.Evaluation, error) {
	var out struct {
		Evaluation registry.Evaluation `json:"evaluation"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/evaluation", nil, ev, &out); err != nil {
		return nil, err
	}
	return &out.Evaluation, nil
}

// StartRollout starts a progressive rollout of a version.
func (c *Client) StartRollout(ctx context.Context, model string, body wire.RolloutBody) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/rollout", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rollout returns a model's rollout, its policy and the latest analysis.
func (c *Client) Rollout(ctx context.Context, model string) (*monitor.RolloutStatus, error) {
	var out monitor.RolloutStatus
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(model)+"/rollout", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RolloutAction pauses, resumes or aborts a model's rollout (action is
// "pause", "resume" or "abort").
func (c *Client) RolloutAction(ctx context.Context, model, action, reason string) (*registry.Event, error) {
	var out registry.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/models/"+url.PathEscape(model)+"/rollout/"+url.PathEscape(action), nil, wire.RolloutActionBody{Reason: reason}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RolloutPolicy returns a model's rollout policy.
func (c *Client) RolloutPolicy(ctx context.Context, model string) (*registry.RolloutPolicy, error) {
	var out registry.RolloutPolicy
	if err := c.do(ctx, http.MethodGet, "/api/v1/models/"+url.PathEscape(model)+"/rollout-policy", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetRolloutPolicy changes some of a model's rollout policy settings.
func (c *Client) SetRolloutPolicy(ctx context.Context, model string, body wire.RolloutPolicyBody) (*registry.RolloutPolicy, error) {
	var out struct {
		Policy registry.RolloutPolicy `json:"policy"`
	}
	if err := c.do(ctx, http.MethodPut, "/api/v1/models/"+url.PathEscape(model)+"/rollout-policy", nil, body, &out); err != nil {
		return nil, err
	}
	return &out.Policy, nil
}
