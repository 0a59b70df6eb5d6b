package expr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Tmpl is a compiled template: text with expressions in {{ }}, such as
// "Hello {{ $trigger.name }}". It is safe for concurrent use.
type Tmpl struct {
	src   string
	parts []part
	// single is set when the whole template is one {{ expression }}; it
	// then evaluates to the expression's value, of whatever type.
	single bool
}

// part is literal text or an expression.
type part struct {
	text string
	expr *Expr
}

// String returns the template as written.
func (t *Tmpl) String() string { return t.src }

// IsConstant reports whether the template holds no expression.
func (t *Tmpl) IsConstant() bool {
	for _, p := range t.parts {
		if p.expr != nil {
			return false
		}
	}
	return true
}

// Template compiles a template. Text outside {{ }} is kept as written; an
// expression may itself contain braces, as in {{ {"a": {"b": 1}} }}. Errors
// are *Error with code EXPRESSION_INVALID.
func Template(src string) (*Tmpl, error) {
	t := &Tmpl{src: src}
	i := 0
	for {
		open := strings.Index(src[i:], "{{")
		if open < 0 {
			break
		}
		open += i
		close, ok := closeBraces(src, open+2)
		if !ok {
			return nil, newError(CodeInvalid, "the {{ at position %d is never closed with }}", open)
		}
		if open > i {
			t.parts = append(t.parts, part{text: src[i:open]})
		}
		inner := src[open+2 : close]
		if strings.TrimSpace(inner) == "" {
			return nil, newError(CodeInvalid, "the {{ }} at position %d is empty", open)
		}
		e, err := Compile(inner)
		if err != nil {
			var xe *Error
			if !errors.As(err, &xe) {
				return nil, err
			}
			return nil, &Error{Code: xe.Code, Message: clip(fmt.Sprintf("in {{ }} at position %d: %s", open, xe.Message))}
		}
		t.parts = append(t.parts, part{expr: e})
		i = close + 2
	}
	if i < len(src) {
		t.parts = append(t.parts, part{text: src[i:]})
	}
	t.single = len(t.parts) == 1 && t.parts[0].expr != nil
	return t, nil
}

// closeBraces returns the index of the "}}" that ends the expression
// starting at i, skipping string literals and balanced braces inside it.
func closeBraces(src string, i int) (int, bool) {
	depth := 0
	for i < len(src) {
		switch c := src[i]; c {
		case '"', '\'':
			i = skipQuoted(src, i, rune(c), true)
			continue
		case '`':
			i = skipQuoted(src, i, '`', false)
			continue
		case '{':
			depth++
		case '}':
			if depth == 0 {
				if i+1 < len(src) && src[i+1] == '}' {
					return i, true
				}
				return 0, false
			}
			depth--
		}
		i++
	}
	return 0, false
}

// Eval renders the template. A template that is exactly one {{ expression }}
// returns the expression's value (nil when undefined); otherwise the result
// is a string in which string values are inserted as they are, undefined
// values as nothing, and other values as JSON. Limits apply to the whole
// template.
func (t *Tmpl) Eval(ctx context.Context, env Env, lim Limits) (any, error) {
	if t.IsConstant() {
		return t.src, nil
	}
	lim = lim.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	b, err := env.bind()
	if err != nil {
		return nil, err
	}
	budget := lim.MaxOutputBytes
	return t.render(ctx, b, &budget)
}

// render evaluates the template, charging its output to *budget.
func (t *Tmpl) render(ctx context.Context, b *bindings, budget *int) (any, error) {
	if t.single {
		v, n, err := t.parts[0].expr.eval(ctx, b, *budget)
		*budget -= n
		return v, err
	}
	var sb strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			sb.WriteString(p.text)
			continue
		}
		v, _, err := p.expr.eval(ctx, b, *budget)
		if err != nil {
			return nil, err
		}
		s, err := text(v)
		if err != nil {
			return nil, newError(CodeFailed, "the value of {{ %s }} cannot be written as text", p.expr.src)
		}
		if len(s) > *budget {
			return nil, newError(CodeTooLarge, "the rendered text is over the size limit")
		}
		*budget -= len(s)
		sb.WriteString(s)
	}
	return sb.String(), nil
}

// text is v as it appears inside a string.
func text(v any) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		return t, nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// EvalJSON evaluates a JSON document whose strings may hold templates, such
// as a node's configuration: objects and arrays are walked and every string
// is rendered with Template's rules, so "{{ $input.count }}" becomes a
// number and "Hi {{ $trigger.name }}" a string. Object keys are kept as
// written. Limits apply to the whole document: one deadline, and one budget
// for the size of everything the expressions produce.
func EvalJSON(ctx context.Context, raw json.RawMessage, env Env, lim Limits) (any, error) {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, newError(CodeInvalid, "the document is not valid JSON: %s", err.Error())
	}
	lim = lim.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	var b *bindings // bound on first use: most documents hold no expression
	budget := lim.MaxOutputBytes
	var walk func(v any, path string) (any, error)
	walk = func(v any, path string) (any, error) {
		switch t := v.(type) {
		case string:
			tmpl, err := compiled(t)
			if err != nil {
				return nil, atPath(path, err)
			}
			if tmpl.IsConstant() {
				return t, nil
			}
			if b == nil {
				if b, err = env.bind(); err != nil {
					return nil, err
				}
			}
			out, err := tmpl.render(ctx, b, &budget)
			if err != nil {
				return nil, atPath(path, err)
			}
			return out, nil
		case map[string]any:
			for _, k := range sortedKeys(t) {
				out, err := walk(t[k], joinPath(path, k))
				if err != nil {
					return nil, err
				}
				t[k] = out
			}
		case []any:
			for i, x := range t {
				out, err := walk(x, path+"["+strconv.Itoa(i)+"]")
				if err != nil {
					return nil, err
				}
				t[i] = out
			}
		}
		return v, nil
	}
	return walk(doc, "")
}

// CompileJSON compiles every template in a JSON document, for checking a
// configuration before it is published. The first error, in document order
// with object keys sorted, names its JSON path: "body.text: ...".
func CompileJSON(raw json.RawMessage) error {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return newError(CodeInvalid, "the document is not valid JSON: %s", err.Error())
	}
	var walk func(v any, path string) error
	walk = func(v any, path string) error {
		switch t := v.(type) {
		case string:
			if _, err := Template(t); err != nil {
				return atPath(path, err)
			}
		case map[string]any:
			for _, k := range sortedKeys(t) {
				if err := walk(t[k], joinPath(path, k)); err != nil {
					return err
				}
			}
		case []any:
			for i, x := range t {
				if err := walk(x, path+"["+strconv.Itoa(i)+"]"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(doc, "")
}

// atPath prefixes an *Error's message with where it happened.
func atPath(path string, err error) error {
	var xe *Error
	if !errors.As(err, &xe) || path == "" {
		return err
	}
	return &Error{Code: xe.Code, Message: clip(path + ": " + xe.Message)}
}

func joinPath(path, key string) string {
	if !isIdent(key) {
		key = "[" + strconv.Quote(key) + "]"
		return path + key
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// templates caches compiled templates by source: a workflow's documents
// are evaluated once per step of every run, and compiling parses each
// expression. A Tmpl is immutable, so one serves every evaluation; the
// cache is emptied when full rather than grown without bound.
var templates struct {
	sync.RWMutex
	m map[string]*Tmpl
}

const (
	maxCachedTemplates = 4096
	maxCachedSource    = 4096
)

// compiled is Template(src), from the cache when it was compiled before.
func compiled(src string) (*Tmpl, error) {
	templates.RLock()
	t, ok := templates.m[src]
	templates.RUnlock()
	if ok {
		return t, nil
	}
	t, err := Template(src)
	if err != nil || t.IsConstant() || len(src) > maxCachedSource {
		return t, err // text alone costs nothing to compile
	}
	templates.Lock()
	if templates.m == nil || len(templates.m) >= maxCachedTemplates {
		templates.m = make(map[string]*Tmpl)
	}
	templates.m[src] = t
	templates.Unlock()
	return t, nil
}
