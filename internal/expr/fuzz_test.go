package expr

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fuzzEnv gives fuzzed expressions something to read.
var fuzzEnv = Env{
	Trigger: map[string]any{"name": "Ann", "items": []any{map[string]any{"qty": 2.0}, map[string]any{"qty": 3.0}}},
	Steps:   map[string]StepResult{"a": {Data: map[string]any{"x": 1.0}, Meta: map[string]any{"ok": true}}},
	Input:   map[string]any{"n": 3.0, "s": "text"},
	Meta:    map[string]any{"run": "r1"},
}

// fuzzLimits keep evaluations of fuzzed input short.
var fuzzLimits = Limits{Timeout: 50 * time.Millisecond, MaxOutputBytes: 64 << 10}

// checkErr fails unless err is nil, an *Error with a known code and a
// message, or the deadline of a canceled context.
func checkErr(t *testing.T, src string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var xe *Error
	if !errors.As(err, &xe) {
		t.Fatalf("%q: got error %T %v, want an *Error", src, err, err)
	}
	switch xe.Code {
	case CodeInvalid, CodeFailed, CodeTimeout, CodeTooLarge:
	default:
		t.Fatalf("%q: got code %q", src, xe.Code)
	}
	if xe.Message == "" {
		t.Fatalf("%q: got an empty message", src)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`$trigger.name`,
		`$steps.a.data.x + 1`,
		`$map([1..3], function($v) { $v * 2 })`,
		`($f := function($n) { $n <= 1 ? 1 : $n * $f($n - 1) }; $f(5))`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Compile(src)
		checkErr(t, src, err)
		if err != nil {
			if e != nil {
				t.Fatalf("%q: got an Expr with error %v", src, err)
			}
			return
		}
		_, err = e.Eval(context.Background(), fuzzEnv, fuzzLimits)
		checkErr(t, src, err)
	})
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		`Hello {{ $trigger.name }}`,
		`{{ $input.n }}`,
		`{{ {"a": {"b": 1}} }}`,
		`a {{ "}}" }} b`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := Template(src)
		checkErr(t, src, err)
		if err != nil {
			return
		}
		_, err = tm.Eval(context.Background(), fuzzEnv, fuzzLimits)
		checkErr(t, src, err)
	})
}
