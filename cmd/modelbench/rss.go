package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The scorer's memory for many models (issue 19): N copies of the shipped
// model under names of their own in a directory, one scorer in directory mode
// serving them all, its RSS read once every model is ready and has answered a
// 256-row request (ONNX Runtime grows a session's arena on its first runs).

// rssPoint is one scorer's memory with models models loaded.
type rssPoint struct {
	models  int
	rss     float64 // bytes
	threads int
}

// parseModelCounts reads "-rss-models 1,10,50".
func parseModelCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 500 {
			return nil, fmt.Errorf("-rss-models %q: want counts from 1 to 500, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// rssModelName is the i-th model's name (from 1): the first is the shipped
// model's own name, which a directory-mode scorer serves anyway.
func rssModelName(i int) string {
	if i == 1 {
		return "calling-score"
	}
	return fmt.Sprintf("calling-score-%d", i)
}

var cardModel = regexp.MustCompile(`"model":\s*"[^"]*"`)

// rssRun measures a scorer's RSS serving each count of models in turn.
func (b *bench) rssRun(counts []int) ([]rssPoint, error) {
	model, err := os.ReadFile(b.o.model)
	if err != nil {
		return nil, err
	}
	card, err := os.ReadFile(filepath.Join(filepath.Dir(b.o.model), "card.json"))
	if err != nil {
		return nil, err
	}
	_, multi := jsonBodies()
	var out []rssPoint
	for _, n := range counts {
		dir := filepath.Join(b.dir, fmt.Sprintf("rss-%d", n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for i := 1; i <= n; i++ {
			name := rssModelName(i)
			c := cardModel.ReplaceAll(card, []byte(`"model": "`+name+`"`))
			if err := os.WriteFile(filepath.Join(dir, name+".onnx"), model, 0o644); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, name+".card.json"), c, 0o644); err != nil {
				return nil, err
			}
		}
		p, err := startServer(b.dir, fmt.Sprintf("scorer-rss-%d", n), b.o.scorerBin,
			[]string{"--model-dir", dir, "--listen", "ADDR", "--grpc-listen", "", "--cache-dir", filepath.Join(dir, "cache")},
			[]string{"ONNXRUNTIME_LIB=" + b.o.lib}, "/readyz")
		if err != nil {
			return nil, err
		}
		pt, err := rssOf(p, n, multi)
		p.stop()
		if err != nil {
			return nil, err
		}
		out = append(out, pt)
	}
	return out, nil
}

// rssOf waits until p serves version 1 of all n models, sends each a 256-row
// request, lets the heap settle and reads p's RSS.
func rssOf(p *proc, n int, rows []byte) (rssPoint, error) {
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		ready := 0
		for i := 1; i <= n; i++ {
			if served(p, rssModelName(i)) == 1 {
				ready++
			}
		}
		if ready == n {
			break
		}
		if time.Now().After(deadline) {
			return rssPoint{}, fmt.Errorf("scorer with %d models: %d ready after 2 minutes; its log:\n%s", n, ready, p.logTail())
		}
	}
	var req map[string]any
	if err := json.Unmarshal(rows, &req); err != nil {
		return rssPoint{}, err
	}
	for i := 1; i <= n; i++ {
		req["model"] = rssModelName(i)
		body, _ := json.Marshal(req)
		resp, err := httpClient.Post(p.url+"/v1/score", "application/json", bytes.NewReader(body))
		if err != nil {
			return rssPoint{}, err
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return rssPoint{}, fmt.Errorf("scoring %s: %s: %s", rssModelName(i), resp.Status, answer)
		}
	}
	time.Sleep(2 * time.Second) // the answers' garbage collected, the heap returned
	rss, threads := p.rss()
	return rssPoint{models: n, rss: rss, threads: threads}, nil
}

// printRSS prints the memory table: RSS, and MB a model beyond the first
// (against the smallest count measured).
func printRSS(pts []rssPoint) {
	if len(pts) == 0 {
		return
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "models on one scorer (directory mode, each answered 256 rows)\tRSS\tthreads\tMB a model beyond the first\t")
	first, worst := pts[0], 0.0
	for _, pt := range pts {
		per := "–"
		if pt.models > first.models {
			mb := (pt.rss - first.rss) / 1e6 / float64(pt.models-first.models)
			worst = max(worst, mb)
			per = fmt.Sprintf("%.2f MB", mb)
		}
		fmt.Fprintf(tw, "  %d\t%.1f MB\t%d\t%s\t\n", pt.models, pt.rss/1e6, pt.threads, per)
	}
	tw.Flush()
	if len(pts) > 1 {
		fmt.Printf("goal under 5 MB a model beyond the first: %.2f MB at most, %s\n", worst, yes(worst < 5))
	}
}
