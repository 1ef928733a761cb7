package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v2"
	"k8s.io/client-go/util/jsonpath"
)

const outputFormats = "table, json, yaml or jsonpath=TEMPLATE (kubectl's, e.g. jsonpath='{.production}')"

// printer writes what a verb has to say in the format -o names. JSON and YAML
// come from the same encoding (the API's field names); jsonpath runs kubectl's
// template over that encoding.
type printer struct {
	format string
	path   *jsonpath.JSONPath
}

func parseOutput(s string) (*printer, error) {
	format, tmpl, hasTmpl := strings.Cut(s, "=")
	switch {
	case (format == "table" || format == "json" || format == "yaml") && !hasTmpl:
		return &printer{format: format}, nil
	case format == "jsonpath":
		if strings.TrimSpace(tmpl) == "" {
			return nil, fmt.Errorf("-o jsonpath needs a template, such as -o jsonpath='{.production}'")
		}
		jp := jsonpath.New("output")
		if err := jp.Parse(tmpl); err != nil {
			return nil, fmt.Errorf("-o jsonpath=%s: %w", tmpl, err)
		}
		return &printer{format: format, path: jp}, nil
	}
	return nil, fmt.Errorf("-o %q: want %s", s, outputFormats)
}

// print writes v as -o asks; as a table, table writes it for a reader.
func (e *env) print(v any, table func(w io.Writer)) error {
	p := e.out
	if p == nil {
		p = &printer{format: "table"}
	}
	switch p.format {
	case "json":
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		// From the JSON encoding (the API's field names), emitted by a YAML
		// encoder that quotes and escapes what is not printable (converting
		// JSON text to YAML would refuse such characters instead).
		tree, err := jsonTree(v)
		if err != nil {
			return err
		}
		y, err := yaml.Marshal(yamlNumbers(tree))
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(y)
		return err
	case "jsonpath":
		tree, err := jsonTree(v)
		if err != nil {
			return err
		}
		// The template's own text may hold line breaks; the values, which
		// came over the network, may not reach the terminal raw.
		var buf bytes.Buffer
		if err := p.path.Execute(&buf, escTree(tree)); err != nil {
			return fmt.Errorf("-o jsonpath: %w", err)
		}
		if buf.Len() > 0 && !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
			buf.WriteByte('\n')
		}
		_, err = e.stdout.Write(buf.Bytes())
		return err
	}
	table(e.stdout)
	return nil
}

// printList prints items: with -o json or yaml as a list (empty, never null);
// else as a table of header and one row per item, or, when there are none,
// the empty message.
func printList[T any](e *env, items []T, empty string, header []string, row func(T) []any) error {
	if items == nil {
		items = []T{}
	}
	return e.print(items, func(w io.Writer) {
		if len(items) == 0 {
			fmt.Fprintln(w, empty)
			return
		}
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, strings.Join(header, "\t"))
			for _, it := range items {
				fmt.Fprintln(tw, cells(row(it)...))
			}
		})
	})
}

// table aligns the rows fn writes (cells separated by tabs).
func table(w io.Writer, fn func(w io.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fn(tw)
	tw.Flush()
}

// cells is one table row: each value printed and escaped (a cell that came
// over the network may hold a tab, a line break or a terminal escape), then
// separated by tabs.
func cells(vs ...any) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = esc(fmt.Sprint(v))
	}
	return strings.Join(out, "\t")
}

// esc shows every character a terminal would act on rather than print (ESC,
// the other control characters, line breaks and tabs, bidirectional overrides,
// invalid UTF-8) as a Go escape such as \x1b, so that a string that came over
// the network can neither move the cursor, retitle the window, clear the
// screen nor forge a line.
func esc(s string) string { return escape(s, false) }

// escText is esc for text of several lines (an error with a hint below it):
// line breaks and tabs stay.
func escText(s string) string { return escape(s, true) }

func escape(s string, keepLines bool) string {
	safe := func(r rune) bool {
		return r != utf8.RuneError && (strconv.IsPrint(r) || keepLines && (r == '\n' || r == '\t'))
	}
	clean := true
	for _, r := range s {
		if !safe(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, n := utf8.DecodeRuneInString(s[i:])
		w = n
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case safe(r):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < utf8.RuneSelf:
			fmt.Fprintf(&b, `\x%02x`, r) // ESC is \x1b, BEL \x07
		default:
			q := strconv.QuoteRune(r) // '\u009b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// escTree escapes every string in a decoded JSON document.
func escTree(v any) any {
	switch t := v.(type) {
	case string:
		return esc(t)
	case []any:
		for i := range t {
			t[i] = escTree(t[i])
		}
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[esc(k)] = escTree(x)
		}
		return out
	}
	return v
}

// jsonTree is v as its JSON encoding decodes: maps, lists, strings, bools and
// json.Number.
func jsonTree(v any) (any, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	err = dec.Decode(&tree)
	return tree, err
}

// yamlNumbers turns a JSON tree's numbers into ints where whole (a revision
// stays 1234567, not 1.234567e+06) and floats elsewhere.
func yamlNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = yamlNumbers(t[i])
		}
	case map[string]any:
		for k, x := range t {
			t[k] = yamlNumbers(x)
		}
	}
	return v
}
