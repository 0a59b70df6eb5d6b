// Package expr evaluates the JSONata expressions that map data between the
// nodes of a workflow.
//
// An expression sees these bindings:
//
//	$trigger  the trigger's output
//	$steps    every prior node's output by node id, each { data, meta },
//	          so $steps.node1.data.email reads node1's data
//	$input    this node's input
//	$meta     engine metadata
//	$         Env.Self when set, otherwise Env.Input
//
// Every evaluation runs under a time limit and a limit on the JSON size of
// its result, and every failure is an *Error whose Code a step error can
// carry. JSONata is provided by github.com/blues/jsonata-go.
//
// User-defined functions are guarded: before compiling, each function body
// is wrapped in calls that count how deeply functions are nested and stop an
// evaluation whose time is up. Unbounded recursion would otherwise overflow
// the goroutine stack, which kills the whole process rather than panicking.
package expr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"maps"
	"sync"
	"unicode"

	jsonata "github.com/blues/jsonata-go"
	"github.com/blues/jsonata-go/jparse"
)

// Error codes carried by *Error.
const (
	CodeInvalid  = "EXPRESSION_INVALID"   // the expression does not compile
	CodeFailed   = "EXPRESSION_FAILED"    // evaluation failed at run time
	CodeTimeout  = "EXPRESSION_TIMEOUT"   // evaluation ran past Limits.Timeout
	CodeTooLarge = "EXPRESSION_TOO_LARGE" // the result is over Limits.MaxOutputBytes
)

// Error is a failed compilation or evaluation. Message is written for the
// person who wrote the expression and is safe to show them.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &expr.Error{Code: expr.CodeTimeout}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: clip(fmt.Sprintf(format, args...))}
}

// maxMessage bounds messages, which can quote data from the evaluation.
const maxMessage = 500

func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Limits bound one evaluation. Zero fields take the defaults.
type Limits struct {
	Timeout        time.Duration // default 1s
	MaxOutputBytes int           // JSON size of the result; default 1 MiB
}

// Default limits.
const (
	DefaultTimeout        = time.Second
	DefaultMaxOutputBytes = 1 << 20
)

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	return l
}

// StepResult is one prior node's output as $steps shows it.
type StepResult struct {
	Data any            `json:"data"`
	Meta map[string]any `json:"meta"`
}

// Env holds the values an expression is evaluated against. Values should be
// JSON-shaped (what encoding/json decodes into an any); other values, such
// as structs or json.RawMessage, are converted through their JSON encoding.
// Env is only read, so one Env may serve concurrent evaluations.
type Env struct {
	Trigger any
	Steps   map[string]StepResult
	Input   any
	Meta    map[string]any
	Self    any // the evaluation context $; Input when nil
}

// Source limits, checked at compile time.
const (
	MaxSourceLen = 10000 // bytes
	MaxNesting   = 100   // depth of the syntax tree
	MaxCallDepth = 1000  // nested calls of user-defined functions
)

// Expr is a compiled expression. It is safe for concurrent use.
//
// The JSONata library keeps variable bindings on its compiled expression, so
// an Expr keeps the checked source and each evaluation parses it afresh into
// a private copy; parsing costs microseconds, far less than the I/O around a
// step.
type Expr struct {
	src     string   // as written
	guarded string   // with user-defined functions wrapped in guards
	funcs   []string // built-in functions it names, such as "map"
}

// String returns the expression as written.
func (e *Expr) String() string { return e.src }

// Compile parses and checks an expression. Its error is an *Error with code
// EXPRESSION_INVALID.
func Compile(src string) (*Expr, error) {
	guarded, names, err := check(src)
	if err != nil {
		return nil, err
	}
	e := &Expr{src: src, guarded: guarded}
	for _, name := range names {
		if _, ok := builtin(name); ok {
			e.funcs = append(e.funcs, name)
		}
	}
	return e, nil
}

// parse runs the library's parser, turning a panic into an error: a
// malformed expression must never take the server down.
func parse(src string) (root jparse.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, newError(CodeInvalid, "the expression could not be parsed")
		}
	}()
	root, err = jparse.Parse(src)
	if err != nil {
		return nil, syntaxError(err)
	}
	return root, nil
}

func syntaxError(err error) *Error {
	var pe *jparse.Error
	if errors.As(err, &pe) {
		return newError(CodeInvalid, "syntax error at position %d: %s", pe.Position, pe.Error())
	}
	return newError(CodeInvalid, "syntax error: %s", err.Error())
}

// Eval evaluates the expression against env within lim. The context $ is
// env.Self, or env.Input when Self is nil. A result that JSONata calls
// undefined (a missing field, say) is returned as nil with a nil error.
// Results are plain JSON values: nil, bool, float64, string, []any and
// map[string]any.
//
// Failures are *Error values, except when ctx itself ends first: then the
// context's error is returned, wrapped.
//
// The library cannot be interrupted from outside. A guard inside every
// user-defined function stops an evaluation soon after its time is up, but a
// single built-in operation over a large value (a long range, a big sort)
// runs to its end on its own goroutine after Eval has returned the timeout;
// Overdue reports how many are still running.
func (e *Expr) Eval(ctx context.Context, env Env, lim Limits) (any, error) {
	lim = lim.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	b, err := env.bind()
	if err != nil {
		return nil, err
	}
	v, _, err := e.eval(ctx, b, lim.MaxOutputBytes)
	return v, err
}

// bindings is an Env made ready for evaluation.
type bindings struct {
	vars map[string]any
	self any
}

func (env Env) bind() (*bindings, error) {
	steps := make(map[string]any, len(env.Steps))
	for id, s := range env.Steps {
		data, err := plain(s.Data)
		if err != nil {
			return nil, fmt.Errorf("expr: step %s data: %w", id, err)
		}
		meta, err := plain(s.Meta)
		if err != nil {
			return nil, fmt.Errorf("expr: step %s meta: %w", id, err)
		}
		steps[id] = map[string]any{"data": data, "meta": meta}
	}
	trigger, err := plain(env.Trigger)
	if err != nil {
		return nil, fmt.Errorf("expr: trigger: %w", err)
	}
	input, err := plain(env.Input)
	if err != nil {
		return nil, fmt.Errorf("expr: input: %w", err)
	}
	meta, err := plain(env.Meta)
	if err != nil {
		return nil, fmt.Errorf("expr: meta: %w", err)
	}
	self := input
	if env.Self != nil {
		if self, err = plain(env.Self); err != nil {
			return nil, fmt.Errorf("expr: self: %w", err)
		}
	}
	return &bindings{
		vars: map[string]any{
			"trigger": trigger,
			"steps":   steps,
			"input":   input,
			"meta":    meta,
		},
		self: self,
	}, nil
}

// plain returns v as JSON-shaped values, converting through encoding/json
// only when v holds something else.
func plain(v any) (any, error) {
	switch t := v.(type) {
	case json.RawMessage:
		if len(t) == 0 {
			return nil, nil
		}
		var out any
		err := json.Unmarshal(t, &out)
		return out, err
	case map[string]any:
		if t == nil {
			return nil, nil
		}
	}
	if isPlain(v) {
		return v, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(raw, &out)
	return out, err
}

func isPlain(v any) bool {
	switch t := v.(type) {
	case nil, bool, float64, string:
		return true
	case []any:
		for _, x := range t {
			if !isPlain(x) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, x := range t {
			if !isPlain(x) {
				return false
			}
		}
		return true
	}
	return false
}

// overdue counts evaluations still running after their caller gave up.
var overdue atomic.Int64

// Overdue returns how many evaluations are still running after Eval
// returned EXPRESSION_TIMEOUT for them.
func Overdue() int64 { return overdue.Load() }

// run states, moved by compare-and-swap between the caller and the
// evaluating goroutine.
const (
	running int32 = iota
	finished
	abandoned
)

// evalState is shared by one evaluation and the guards inside it.
type evalState struct {
	stop  atomic.Bool  // set when the caller has given up
	depth atomic.Int32 // nesting of user-defined function calls
	state atomic.Int32
}

var (
	errStopped  = errors.New("evaluation stopped")
	errTooDeep  = errors.New("functions nested too deeply")
	errNotValue = errors.New("not a JSON value")
)

type outcome struct {
	v   any
	err error
}

// eval runs one evaluation and returns the result with its JSON size.
// budget is the largest JSON size allowed.
func (e *Expr) eval(ctx context.Context, b *bindings, budget int) (any, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, e.ctxError(ctx, err)
	}
	st := &evalState{}
	done := make(chan outcome, 1)
	go func() {
		v, err := st.run(e.guarded, e.funcs, b)
		if !st.state.CompareAndSwap(running, finished) {
			overdue.Add(-1)
		}
		done <- outcome{v, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		st.stop.Store(true)
		if st.state.CompareAndSwap(running, abandoned) {
			overdue.Add(1)
			return nil, 0, e.ctxError(ctx, ctx.Err())
		}
		o = <-done // finished just in time
	}
	if o.err != nil {
		return nil, 0, e.runError(o.err)
	}
	if o.v == nil {
		return nil, 0, nil
	}
	raw, err := json.Marshal(o.v)
	if err != nil {
		return nil, 0, newError(CodeFailed, "the result is not a JSON value (a function, or a number out of range)")
	}
	if len(raw) > budget {
		return nil, 0, newError(CodeTooLarge, "the result is %d bytes of JSON, over the limit of %d", len(raw), budget)
	}
	// Decode the encoding rather than return the library's value: it may
	// share memory with the inputs, and callers get plain JSON values.
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, 0, newError(CodeFailed, "the result is not a JSON value")
	}
	return out, len(raw), nil
}

// ctxError tells a limit that tripped (an *Error) from a caller that went
// away (the context's error).
func (e *Expr) ctxError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return newError(CodeTimeout, "the expression did not finish in time")
		}
	}
	return fmt.Errorf("expr: evaluation stopped: %w", err)
}

func (e *Expr) runError(err error) error {
	var xe *Error
	switch {
	case errors.As(err, &xe):
		return xe
	case errors.Is(err, errStopped):
		return newError(CodeTimeout, "the expression did not finish in time")
	case errors.Is(err, errTooDeep):
		return newError(CodeFailed, "functions are nested more than %d calls deep (is a recursion missing its end?)", MaxCallDepth)
	}
	return newError(CodeFailed, "%s", err.Error())
}

// Names of the guard functions and the variable that holds a function
// body's value. Sources containing the prefix are refused, so user code
// can neither call nor shadow them.
const (
	reservedPrefix = "__tj_"
	enterName      = reservedPrefix + "enter"
	leaveName      = reservedPrefix + "leave"
	resultName     = reservedPrefix + "r"
)

// run parses the guarded source into a private expression and evaluates
// it; a panic in the library becomes an error.
func (st *evalState) run(src string, funcs []string, b *bindings) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, newError(CodeFailed, "the expression failed: %v", r)
		}
	}()
	x, err := jsonata.Compile(src)
	if err != nil {
		return nil, syntaxError(err)
	}
	vars := b.vars
	if len(funcs) > 0 {
		vars = make(map[string]any, len(b.vars)+len(funcs))
		maps.Copy(vars, b.vars)
		for _, name := range funcs {
			proto, _ := builtin(name)
			vars[name] = cloneFunc(proto)
		}
	}
	if err := x.RegisterVars(vars); err != nil {
		return nil, fmt.Errorf("expr: bind variables: %w", err)
	}
	err = x.RegisterExts(map[string]jsonata.Extension{
		enterName: {Func: st.enter},
		leaveName: {Func: st.leave},
	})
	if err != nil {
		return nil, fmt.Errorf("expr: register guards: %w", err)
	}
	v, err = x.Eval(b.self)
	if errors.Is(err, jsonata.ErrUndefined) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// The library's built-in functions are single shared objects, and every
// call stores the caller's name and context in the object it calls, so two
// evaluations calling $uppercase at once could each see the other's data.
// Each evaluation therefore binds, under the same names, private copies of
// the built-ins its expression names, and the shared ones are never called.

// builtins caches the library's built-in function objects by name; names
// that are not built-ins map to nil.
var builtins sync.Map

// perEvaluation are built-ins the library makes afresh for every
// evaluation, reading the clock; a copy made once would stop the clock.
var perEvaluation = map[string]bool{"now": true, "millis": true}

// builtin returns the library's object for the built-in function name.
func builtin(name string) (any, bool) {
	if v, ok := builtins.Load(name); ok {
		return v, v != nil
	}
	var fn any
	if !perEvaluation[name] && validVarName(name) {
		if x, err := jsonata.Compile("$" + name); err == nil {
			if v, err := x.Eval(nil); err == nil {
				if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct {
					fn = v
				}
			}
		}
	}
	builtins.Store(name, fn)
	return fn, fn != nil
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// cloneFunc returns a shallow copy of a built-in function object: its own
// name and context, its definition shared.
func cloneFunc(fn any) any {
	p := reflect.ValueOf(fn)
	c := reflect.New(p.Type().Elem())
	c.Elem().Set(p.Elem())
	return c.Interface()
}

// enter runs at the start of every user-defined function call.
func (st *evalState) enter() (bool, error) {
	if st.stop.Load() {
		return false, errStopped
	}
	if st.depth.Add(1) > MaxCallDepth {
		return false, errTooDeep
	}
	return true, nil
}

// leave runs when a user-defined function call returns.
func (st *evalState) leave() bool {
	st.depth.Add(-1)
	return true
}

// check validates src and returns it with every user-defined function body
// guarded.
func check(src string) (string, []string, error) {
	guarded, root, err := guard(src)
	if err != nil {
		return "", nil, err
	}
	return guarded, varNames(root), nil
}

func guard(src string) (string, jparse.Node, error) {
	if strings.TrimSpace(src) == "" {
		return "", nil, newError(CodeInvalid, "the expression is empty")
	}
	if len(src) > MaxSourceLen {
		return "", nil, newError(CodeInvalid, "the expression is %d characters long, over the limit of %d", len(src), MaxSourceLen)
	}
	if !utf8.ValidString(src) {
		return "", nil, newError(CodeInvalid, "the expression is not valid UTF-8 text")
	}
	if strings.Contains(src, reservedPrefix) {
		return "", nil, newError(CodeInvalid, "names starting with %q are reserved", reservedPrefix)
	}
	if stallingSignature(src) {
		return "", nil, newError(CodeInvalid, "a function signature holds a character that is not allowed there")
	}
	root, err := parse(src)
	if err != nil {
		return "", nil, err
	}
	lambdas, err := inspect(root, MaxNesting)
	if err != nil {
		return "", nil, err
	}
	if len(lambdas) == 0 {
		return src, root, nil
	}
	guarded, n := guardSource(src)
	bad := newError(CodeInvalid, "this use of functions is not supported; try writing it more simply")
	if n != len(lambdas) {
		return "", nil, bad
	}
	groot, err := parse(guarded)
	if err != nil {
		return "", nil, bad
	}
	// Every function in the guarded tree must carry its guard, and the
	// tree without the guards must be the tree that was written.
	glambdas, err := inspect(groot, 4*MaxNesting) // guards add levels
	if err != nil || len(glambdas) != len(lambdas) {
		return "", nil, bad
	}
	for _, l := range glambdas {
		body, ok := unguard(l.Body)
		if !ok {
			return "", nil, bad
		}
		l.Body = body
	}
	if groot.String() != root.String() {
		return "", nil, bad
	}
	return guarded, root, nil
}

// varNames returns the variable names the tree mentions.
func varNames(root jparse.Node) []string {
	seen := map[string]bool{}
	var names []string
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Pointer:
			if v.IsNil() || v.Type().Elem().PkgPath() != jparsePath {
				return
			}
			if v.Type() == variableType {
				if name := v.Elem().Field(0).String(); !seen[name] {
					seen[name] = true
					names = append(names, name)
				}
				return
			}
			walk(v.Elem())
		case reflect.Struct:
			if v.Type().PkgPath() == jparsePath {
				for i := range v.NumField() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(&root).Elem())
	return names
}

var (
	variableType = reflect.TypeFor[*jparse.VariableNode]()
	lambdaType   = reflect.TypeFor[*jparse.LambdaNode]()
	jparsePath   = lambdaType.Elem().PkgPath()
)

// inspect walks the syntax tree, checking its depth and collecting its
// user-defined functions. Some node types are unexported, so the walk goes
// through reflection.
func inspect(root jparse.Node, maxDepth int) ([]*jparse.LambdaNode, error) {
	var lambdas []*jparse.LambdaNode
	seen := map[*jparse.LambdaNode]bool{}
	var walk func(v reflect.Value, depth int) error
	walk = func(v reflect.Value, depth int) error {
		switch v.Kind() {
		case reflect.Interface:
			if !v.IsNil() {
				return walk(v.Elem(), depth)
			}
		case reflect.Pointer:
			if v.IsNil() || v.Type().Elem().PkgPath() != jparsePath {
				return nil
			}
			if depth >= maxDepth {
				return newError(CodeInvalid, "the expression is nested more than %d levels deep", maxDepth)
			}
			if v.Type() == lambdaType {
				// Reached through unexported fields the value cannot be
				// used as an interface, but the pointer is still ours.
				l := (*jparse.LambdaNode)(v.UnsafePointer())
				if !seen[l] {
					seen[l] = true
					lambdas = append(lambdas, l)
				}
			}
			return walk(v.Elem(), depth+1)
		case reflect.Struct:
			if v.Type().PkgPath() != jparsePath {
				return nil
			}
			for i := range v.NumField() {
				if err := walk(v.Field(i), depth); err != nil {
					return err
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				if err := walk(v.Index(i), depth); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(reflect.ValueOf(&root).Elem(), 0); err != nil {
		return nil, err
	}
	return lambdas, nil
}

// unguard checks that body has the shape guardSource gives a function body,
// ($enter(); $r := (BODY); $leave(); $r), and returns BODY.
func unguard(body jparse.Node) (jparse.Node, bool) {
	blk, ok := body.(*jparse.BlockNode)
	if !ok || len(blk.Exprs) != 4 {
		return nil, false
	}
	isCall := func(n jparse.Node, name string) bool {
		c, ok := n.(*jparse.FunctionCallNode)
		if !ok || len(c.Args) != 0 {
			return false
		}
		f, ok := c.Func.(*jparse.VariableNode)
		return ok && f.Name == name
	}
	as, ok := blk.Exprs[1].(*jparse.AssignmentNode)
	if !ok || as.Name != resultName || !isCall(blk.Exprs[0], enterName) || !isCall(blk.Exprs[2], leaveName) {
		return nil, false
	}
	if r, ok := blk.Exprs[3].(*jparse.VariableNode); !ok || r.Name != resultName {
		return nil, false
	}
	inner, ok := as.Value.(*jparse.BlockNode)
	if !ok || len(inner.Exprs) != 1 {
		return nil, false
	}
	return inner.Exprs[0], true
}
