package expr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

func eval(t *testing.T, src string, env Env, lim Limits) (any, error) {
	t.Helper()
	e, err := Compile(src)
	if err != nil {
		return nil, err
	}
	return e.Eval(context.Background(), env, lim)
}

func sampleEnv(t *testing.T) Env {
	return Env{
		Trigger: mustJSON(t, `{"name": "Ann", "email": "ann@example.com", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}`),
		Steps: map[string]StepResult{
			"node1": {Data: mustJSON(t, `{"x": 5, "tags": ["red", "blue"]}`), Meta: map[string]any{"status": "succeeded"}},
		},
		Input: mustJSON(t, `{"count": 7, "who": "input"}`),
		Meta:  map[string]any{"runId": "run_1", "attempt": 2.0},
	}
}

func TestBindings(t *testing.T) {
	env := sampleEnv(t)
	withSelf := env
	withSelf.Self = mustJSON(t, `{"who": "self"}`)
	tests := []struct {
		name string
		src  string
		env  Env
		want any
	}{
		{"trigger field", `$trigger.name`, env, "Ann"},
		{"trigger aggregate", `$sum($trigger.items.qty)`, env, 5.0},
		{"steps data", `$steps.node1.data.x`, env, 5.0},
		{"steps meta", `$steps.node1.meta.status`, env, "succeeded"},
		{"steps array", `$steps.node1.data.tags[1]`, env, "blue"},
		{"input", `$input.count * 2`, env, 14.0},
		{"meta", `$meta.runId & "/" & $string($meta.attempt)`, env, "run_1/2"},
		{"context is input", `who`, env, "input"},
		{"context is self", `who`, withSelf, "self"},
		{"dollar is self", `$.who`, withSelf, "self"},
		{"input still input with self", `$input.who`, withSelf, "input"},
		{"object result", `{"to": $trigger.email, "n": $input.count}`, env, map[string]any{"to": "ann@example.com", "n": 7.0}},
		{"array result", `$trigger.items.sku`, env, []any{"a", "b"}},
		{"undefined field", `$trigger.missing`, env, nil},
		{"undefined step", `$steps.nope.data`, env, nil},
		{"empty env", `$trigger.name`, Env{}, nil},
		{"null", `null`, env, nil},
		{"boolean", `$input.count > 3`, env, true},
		{"function applied", `$map([1, 2, 3], function($v) { $v * $input.count })`, env, []any{7.0, 14.0, 21.0}},
		{"recursion within limit", `($f := function($n) { $n <= 1 ? 1 : $n * $f($n - 1) }; $f(10))`, env, 3628800.0},
		{"typed lambda", `(function($a, $b)<nn:n> { $a + $b })(2, 3)`, env, 5.0},
		{"shorthand lambda", `(λ($a) { $a & "!" })("hi")`, env, "hi!"},
		{"string mentions function", `"function($x){ $x }" & "/}"`, env, "function($x){ $x }/}"},
		{"regex beside lambda", `$map(["ab", "cd"], function($s) { $contains($s, /b/) ? "y}" : "n{" })`, env, []any{"y}", "n{"}},
		{"nested lambdas", `$map([1, 2], function($a) { $map([10, 20], function($b) { $a * $b }) })`, env, []any{[]any{10.0, 20.0}, []any{20.0, 40.0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := eval(t, tt.src, tt.env, Limits{})
			if err != nil {
				t.Fatalf("%s: got error %v, want %v", tt.src, err, tt.want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: got %#v, want %#v", tt.src, got, tt.want)
			}
		})
	}
}

// TestStepsMapping runs three steps a -> b -> c, each step's input mapped
// by expressions from the outputs before it; c maps from both a and b.
func TestStepsMapping(t *testing.T) {
	trigger := mustJSON(t, `{"order": {"id": "o-17", "lines": [{"price": 10, "qty": 3}, {"price": 2.5, "qty": 4}]}, "customer": {"email": "bo@example.com", "name": "Bo"}}`)
	steps := []struct {
		id      string
		mapping map[string]string // input field -> expression
		run     func(input map[string]any) any
		want    map[string]any // the mapped input
	}{
		{
			id: "a",
			mapping: map[string]string{
				"orderId": `$trigger.order.id`,
				"total":   `$sum($trigger.order.lines.(price * qty))`,
			},
			run: func(in map[string]any) any {
				return map[string]any{"invoice": "inv-" + in["orderId"].(string), "amount": in["total"]}
			},
			want: map[string]any{"orderId": "o-17", "total": 40.0},
		},
		{
			id: "b",
			mapping: map[string]string{
				"to":      `$trigger.customer.email`,
				"subject": `"Invoice " & $steps.a.data.invoice`,
			},
			run: func(in map[string]any) any {
				return map[string]any{"messageId": "m-1", "sentTo": in["to"]}
			},
			want: map[string]any{"to": "bo@example.com", "subject": "Invoice inv-o-17"},
		},
		{
			id: "c",
			mapping: map[string]string{
				"summary": `$steps.a.data.invoice & " for " & $string($steps.a.data.amount) & " sent as " & $steps.b.data.messageId`,
				"record":  `{"invoice": $steps.a.data.invoice, "recipient": $steps.b.data.sentTo, "attempt": $steps.b.meta.attempt}`,
			},
			run:  func(in map[string]any) any { return in },
			want: map[string]any{"summary": "inv-o-17 for 40 sent as m-1", "record": map[string]any{"invoice": "inv-o-17", "recipient": "bo@example.com", "attempt": 1.0}},
		},
	}
	results := map[string]StepResult{}
	for _, s := range steps {
		env := Env{Trigger: trigger, Steps: results, Meta: map[string]any{"node": s.id}}
		input := map[string]any{}
		for field, src := range s.mapping {
			v, err := eval(t, src, env, Limits{})
			if err != nil {
				t.Fatalf("step %s field %s: got error %v", s.id, field, err)
			}
			input[field] = v
		}
		if !reflect.DeepEqual(input, s.want) {
			t.Fatalf("step %s input: got %#v, want %#v", s.id, input, s.want)
		}
		results[s.id] = StepResult{Data: s.run(input), Meta: map[string]any{"attempt": 1}}
	}
}

func TestTemplates(t *testing.T) {
	env := sampleEnv(t)
	tests := []struct {
		src  string
		want any
	}{
		{`Hello {{ $trigger.name }}`, "Hello Ann"},
		{`{{ $input.count }}`, 7.0},
		{`{{$trigger.items}}`, []any{map[string]any{"sku": "a", "qty": 2.0}, map[string]any{"sku": "b", "qty": 3.0}}},
		{`{{ $input.count > 1 }}`, true},
		{`{{ $trigger.nope }}`, nil},
		{`count: {{ $input.count }}`, "count: 7"},
		{`ratio {{ $input.count / 2 }}`, "ratio 3.5"},
		{`big {{ 12345678901 }}`, "big 12345678901"},
		{`tags {{ $steps.node1.data.tags }}`, `tags ["red","blue"]`},
		{`obj {{ {"a": {"b": "<x>"}} }}`, `obj {"a":{"b":"<x>"}}`},
		{`{{ {"a": {"b": 1}} }}`, map[string]any{"a": map[string]any{"b": 1.0}}},
		{`[{{ $trigger.missing }}]`, "[]"},
		{`{{ "}}" }} and {{ '{{' }}`, "}} and {{"},
		{`{{ $trigger.name }} <{{ $trigger.email }}>`, "Ann <ann@example.com>"},
		{`no expressions }} here`, "no expressions }} here"},
		{``, ""},
	}
	for _, tt := range tests {
		tm, err := Template(tt.src)
		if err != nil {
			t.Errorf("Template(%q): got error %v", tt.src, err)
			continue
		}
		got, err := tm.Eval(context.Background(), env, Limits{})
		if err != nil {
			t.Errorf("Template(%q).Eval: got error %v", tt.src, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Template(%q): got %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{`Hello {{ $trigger.name`, "never closed"},
		{`Hello {{ }}`, "empty"},
		{`Hi {{ $trigger. }}`, "position 3"},
		{`{{ {"a": 1 }}`, "never closed"},
	}
	for _, tt := range tests {
		_, err := Template(tt.src)
		var xe *Error
		if !errors.As(err, &xe) || xe.Code != CodeInvalid {
			t.Errorf("Template(%q): got error %v, want %s", tt.src, err, CodeInvalid)
			continue
		}
		if !strings.Contains(xe.Message, tt.want) {
			t.Errorf("Template(%q): got message %q, want it to contain %q", tt.src, xe.Message, tt.want)
		}
	}
}

func TestEvalJSON(t *testing.T) {
	env := sampleEnv(t)
	raw := json.RawMessage(`{
		"url": "https://api.example.com/users/{{ $steps.node1.data.x }}",
		"method": "POST",
		"retries": 3,
		"body": {
			"text": "Hi {{ $trigger.name }}, you have {{ $input.count }} items",
			"count": "{{ $input.count }}",
			"tags": ["{{ $steps.node1.data.tags[0] }}", "static", "{{ $steps.node1.data.tags }}"],
			"missing": "{{ $trigger.none }}",
			"flag": true,
			"nothing": null
		},
		"{{ not a key }}": "kept"
	}`)
	got, err := EvalJSON(context.Background(), raw, env, Limits{})
	if err != nil {
		t.Fatalf("EvalJSON: got error %v", err)
	}
	want := mustJSON(t, `{
		"url": "https://api.example.com/users/5",
		"method": "POST",
		"retries": 3,
		"body": {
			"text": "Hi Ann, you have 7 items",
			"count": 7,
			"tags": ["red", "static", ["red", "blue"]],
			"missing": null,
			"flag": true,
			"nothing": null
		},
		"{{ not a key }}": "kept"
	}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EvalJSON: got %#v, want %#v", got, want)
	}

	_, err = EvalJSON(context.Background(), json.RawMessage(`{"a": {"b": ["ok", "{{ 1 + }}"]}}`), env, Limits{})
	if err == nil || !strings.Contains(err.Error(), "a.b[1]: ") {
		t.Errorf("EvalJSON with a bad template: got error %v, want one naming a.b[1]", err)
	}
	_, err = EvalJSON(context.Background(), json.RawMessage(`{"a": "{{ $trigger.name + 1 }}"}`), env, Limits{})
	var xe *Error
	if !errors.As(err, &xe) || xe.Code != CodeFailed || !strings.HasPrefix(xe.Message, "a: ") {
		t.Errorf("EvalJSON with a failing expression: got %v, want %s at a", err, CodeFailed)
	}
	// Each value (1893 bytes of JSON) fits the budget, both together do not.
	// Small values and a generous deadline: the verdict is about size, and
	// a loaded machine must not turn it into a timeout.
	_, err = EvalJSON(context.Background(), json.RawMessage(`{"a": "{{ [1..500] }}", "b": "{{ [1..500] }}"}`), env, Limits{MaxOutputBytes: 3000, Timeout: time.Minute})
	if !errors.As(err, &xe) || xe.Code != CodeTooLarge {
		t.Errorf("EvalJSON over the shared size budget: got %v, want %s", err, CodeTooLarge)
	}
}

func TestCompileJSON(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" for no error, else a prefix of the message
	}{
		{`{"body": {"text": "Hi {{ $trigger.name }}"}, "n": 1}`, ""},
		{`"{{ $input }}"`, ""},
		{`{"body": {"text": "Hi {{ $trigger.name + }}"}}`, "body.text: "},
		{`{"list": [1, "{{ ok }}", "{{ ( }}"]}`, "list[2]: "},
		{`{"a b": "{{ }}"}`, `["a b"]: `},
		{`{"a": "{{ 1 }}", "z": "{{ 2 + }}", "m": "{{ ) }}"}`, "m: "},
		{`{not json`, "the document is not valid JSON"},
	}
	for _, tt := range tests {
		err := CompileJSON(json.RawMessage(tt.raw))
		if tt.want == "" {
			if err != nil {
				t.Errorf("CompileJSON(%s): got error %v, want none", tt.raw, err)
			}
			continue
		}
		var xe *Error
		if !errors.As(err, &xe) || xe.Code != CodeInvalid || !strings.HasPrefix(xe.Message, tt.want) {
			t.Errorf("CompileJSON(%s): got %v, want %s with a message starting %q", tt.raw, err, CodeInvalid, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	env := sampleEnv(t)
	short := Limits{Timeout: 50 * time.Millisecond}
	// Size cases stay small and get a deadline no load reaches, so they
	// cannot end as a timeout instead (the timeout cases above leave
	// built-ins running on other goroutines while these run).
	sized := func(maxBytes int) Limits { return Limits{Timeout: time.Minute, MaxOutputBytes: maxBytes} }
	tests := []struct {
		name     string
		src      string
		lim      Limits
		wantCode string
		wantMsg  string
	}{
		{"syntax error", `$trigger.name +`, Limits{}, CodeInvalid, "position"},
		{"bad token", `$trigger.name + )`, Limits{}, CodeInvalid, "')'"},
		{"empty", `   `, Limits{}, CodeInvalid, "empty"},
		{"too long", `"` + strings.Repeat("x", MaxSourceLen) + `"`, Limits{}, CodeInvalid, "over the limit"},
		{"too deep", strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200), Limits{}, CodeInvalid, "nested"},
		{"long operator chain", "1" + strings.Repeat("+1", 300), Limits{}, CodeInvalid, "nested"},
		{"reserved name", `$__tj_enter()`, Limits{}, CodeInvalid, "reserved"},
		{"shadowing a guard", `(function($__tj_enter){ 1 })(2)`, Limits{}, CodeInvalid, "reserved"},
		{"signature the parser stalls on", `function($)<!:n>`, Limits{}, CodeInvalid, "signature"},
		{"stalling signature after a string", `function($x)<"{" ~ >{ $x }`, Limits{}, CodeInvalid, "signature"},
		{"type error", `$trigger.name + 1`, Limits{}, CodeFailed, "must evaluate to a number"},
		{"unknown function", `$nosuch(1)`, Limits{}, CodeFailed, ""},
		{"error function", `$error("custom failure")`, Limits{}, CodeFailed, "custom failure"},
		{"infinite number", `1 / 0`, Limits{}, CodeFailed, ""},
		{"endless recursion", `($f := function($n) { $f($n + 1) }; $f(0))`, Limits{}, CodeFailed, "nested more than"},
		{"mutual recursion", `($a := function($n) { $b($n) }; $b := function($n) { $a($n) }; $a(0))`, Limits{}, CodeFailed, "nested more than"},
		{"self application", `(function($f) { $f($f) })(function($f) { $f($f) })`, Limits{}, CodeFailed, "nested more than"},
		{"timeout in a long map", `$sum($map([1..5000000], function($v) { $v * 2 }))`, short, CodeTimeout, "in time"},
		{"timeout in nested maps", `$count($map([1..100000], function($a) { $map([1..100000], function($b) { $a + $b }) }))`, short, CodeTimeout, "in time"},
		{"too large", `[1..2000]`, sized(1000), CodeTooLarge, "over the limit"},
		{"too large string", `$pad("", 3000, "x")`, sized(1000), CodeTooLarge, "over the limit"},
		{"over the default size", `$pad("", 1100000, "x")`, Limits{Timeout: time.Minute}, CodeTooLarge, "over the limit of 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			got, err := eval(t, tt.src, env, tt.lim)
			var xe *Error
			if !errors.As(err, &xe) {
				t.Fatalf("got %#v, %v; want an *Error with code %s", got, err, tt.wantCode)
			}
			if xe.Code != tt.wantCode {
				t.Errorf("got code %s (%s), want %s", xe.Code, xe.Message, tt.wantCode)
			}
			if !strings.Contains(xe.Message, tt.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", xe.Message, tt.wantMsg)
			}
			if !errors.Is(err, &Error{Code: tt.wantCode}) {
				t.Errorf("errors.Is(err, &Error{Code: %s}): got false, want true", tt.wantCode)
			}
			if d := time.Since(start); tt.wantCode == CodeTimeout && d > tt.lim.Timeout+time.Second {
				t.Errorf("took %v, want about %v", d, tt.lim.Timeout)
			}
		})
	}
}

// TestTimeoutStopsEvaluation checks that the guard inside user-defined
// functions ends an abandoned evaluation rather than letting it run on.
func TestTimeoutStopsEvaluation(t *testing.T) {
	// Overdue counts every abandoned evaluation in the process: built-ins
	// that earlier tests timed out on (a range of millions) run to their
	// end first, so only this evaluation is counted below.
	if n := waitOverdue(2 * time.Minute); n != 0 {
		t.Fatalf("evaluations of earlier tests still running: %d", n)
	}
	_, err := eval(t, `$count($map([1..100000], function($a) { $map([1..100000], function($b) { $a + $b }) }))`, Env{}, Limits{Timeout: 20 * time.Millisecond})
	if !errors.Is(err, &Error{Code: CodeTimeout}) {
		t.Fatalf("got %v, want %s", err, CodeTimeout)
	}
	// Generous: under -race on a loaded machine, the built-ins between two
	// guard checks can take seconds; unguarded, this evaluation would run
	// for hours.
	if n := waitOverdue(2 * time.Minute); n != 0 {
		t.Errorf("overdue evaluations after the timeout: got %d, want 0", n)
	}
}

// waitOverdue waits up to d for Overdue to reach 0 and returns it.
func waitOverdue(d time.Duration) int64 {
	deadline := time.Now().Add(d)
	for Overdue() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return Overdue()
}

func TestContextCanceled(t *testing.T) {
	e, err := Compile(`$sum($map([1..5000000], function($v) { $v }))`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = e.Eval(ctx, Env{}, Limits{Timeout: 10 * time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	var xe *Error
	if errors.As(err, &xe) {
		t.Errorf("got *Error %v, want the context's error: the caller went away, the expression did not fail", xe)
	}
}

func TestEnvConversion(t *testing.T) {
	type order struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	env := Env{
		Trigger: order{ID: "o-1", Total: 12},
		Input:   json.RawMessage(`{"n": 3}`),
		Steps:   map[string]StepResult{"s": {Data: map[string]int{"k": 4}}},
	}
	got, err := eval(t, `[$trigger.id, $trigger.total, n, $steps.s.data.k]`, env, Limits{})
	want := []any{"o-1", 12.0, 3.0, 4.0}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, %v; want %#v", got, err, want)
	}
}

func TestConcurrentEval(t *testing.T) {
	// s.$uppercase() takes its argument from the context, which the library
	// stores in the function object it calls.
	e, err := Compile(`{"name": $trigger.name, "n": $input.n, "up": s.$uppercase(), "sq": $map([1, 2, 3], function($v) { $v * $input.n })}`)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := Template(`{{ $trigger.name }}#{{ $input.n }}`)
	if err != nil {
		t.Fatal(err)
	}
	// The verdict is about sharing, not speed: 16 evaluations at once under
	// -race on a busy machine can take longer than the default second.
	lim := Limits{Timeout: time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := float64(g*1000 + i)
				env := Env{Trigger: map[string]any{"name": fmt.Sprint("g", g)}, Input: map[string]any{"n": n, "s": fmt.Sprint("s", n)}}
				got, err := e.Eval(context.Background(), env, lim)
				want := map[string]any{"name": fmt.Sprint("g", g), "n": n, "up": fmt.Sprint("S", n), "sq": []any{n, 2 * n, 3 * n}}
				if err != nil || !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("got %#v, %v; want %#v", got, err, want)
					return
				}
				s, err := tm.Eval(context.Background(), env, lim)
				if wantS := fmt.Sprintf("g%d#%d", g, int(n)); err != nil || s != wantS {
					errs <- fmt.Errorf("template: got %#v, %v; want %q", s, err, wantS)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestGuardedSource checks that guarding leaves the meaning of expressions
// with functions alone, including ones whose strings and regular
// expressions look like code.
func TestGuardedSource(t *testing.T) {
	tests := []struct {
		src  string
		want any
	}{
		{`(function($x) { $x & "}" })("{")`, "{}"},
		{`(function($x) { $x & 'function($y){ }' })("a")`, "afunction($y){ }"},
		{"(function($x) { $x.`a}b` })({\"a}b\": 1})", 1.0},
		{`$map(["a/b", "c"], function($s) { $replace($s, /\//, "-") })`, []any{"a-b", "c"}},
		{`(function($x) { 6 / $x / 2 })(3)`, 1.0},
		{`$filter([1, 2, 3, 4], function($v) { $v % 2 = 0 })`, []any{2.0, 4.0}},
		{`$reduce([1, 2, 3], function($a, $b) { $a + $b })`, 6.0},
		{`$sort([3, 1, 2], function($a, $b) { $a > $b })`, []any{1.0, 2.0, 3.0}},
		{`($inc := function($x) { $x + 1 }; $twice := function($f) { function($x) { $f($f($x)) } }; $twice($inc)(5))`, 7.0},
		{`(function($x) { {"a": {"b": $x}} })(1)`, map[string]any{"a": map[string]any{"b": 1.0}}},
	}
	for _, tt := range tests {
		got, err := eval(t, tt.src, Env{}, Limits{})
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tt.src, got, err, tt.want)
		}
	}
}
