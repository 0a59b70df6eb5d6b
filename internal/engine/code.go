package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"

	"taskjuice/internal/workflow"
)

// The Code step runs JavaScript in goja, a JavaScript engine written in Go:
// a fresh interpreter per step with nothing but the language and its
// standard objects (no require, no network, no files, no timers), the
// run's data as $input, $trigger, $steps and $meta, and console.log into
// the step's console. What the code returns, as JSON, is the step's
// output. It is stopped at its time limit, when the heap grows past the
// memory limit while it runs, or when its step is cancelled.

// CodeLimits bound a Code step. Zero fields take the defaults.
type CodeLimits struct {
	// MemoryBytes is how far the heap may grow while the code runs
	// (default 64 MiB). It is read from the process's heap, so other
	// work at the same moment counts against it too.
	MemoryBytes uint64
	// MaxOutputBytes bounds the JSON of the output (default 1 MiB).
	MaxOutputBytes int
	// MaxConsoleBytes bounds what console.log keeps (default 64 KiB).
	MaxConsoleBytes int
}

func (l CodeLimits) withDefaults() CodeLimits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = 64 << 20
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = 1 << 20
	}
	if l.MaxConsoleBytes <= 0 {
		l.MaxConsoleBytes = 64 << 10
	}
	return l
}

// maxCallStack bounds the code's recursion.
const maxCallStack = 2000

// stop reasons given to the interpreter's interrupt.
var (
	errCodeTimeout = errors.New("time limit")
	errCodeMemory  = errors.New("memory limit")
)

func codeNode(lim CodeLimits) Executor {
	lim = lim.withDefaults()
	return func(ctx context.Context, c Call) (Outcome, error) {
		cfg, err := decode[workflow.CodeConfig](c)
		if err != nil {
			return Outcome{}, err
		}
		timeout := time.Duration(cfg.TimeoutMS) * time.Millisecond
		if cfg.TimeoutMS <= 0 {
			timeout = workflow.DefaultCodeTimeoutMS * time.Millisecond
		}
		timeout = min(timeout, workflow.MaxCodeTimeoutMS*time.Millisecond)
		return runCode(ctx, c, cfg.Source, timeout, lim)
	}
}

func runCode(ctx context.Context, c Call, source string, timeout time.Duration, lim CodeLimits) (Outcome, error) {
	// The body sits on its own lines, so a reported line is the user's
	// line plus one.
	prog, err := goja.Compile("code", "(function () {\n"+source+"\n})()", true)
	if err != nil {
		return Outcome{}, &StepError{Code: "CODE_SYNTAX", Message: "The code does not parse: " + shiftLines(err.Error())}
	}
	vm := goja.New()
	vm.SetMaxCallStackSize(maxCallStack)
	if err := setGlobals(vm, c, lim); err != nil {
		return Outcome{}, err
	}
	stop := watch(ctx, vm, timeout, lim.MemoryBytes)
	res, err := vm.RunProgram(prog)
	if err == nil {
		var s goja.Value
		s, err = jsonStringify(vm, res)
		stop()
		if err == nil {
			return codeOutput(s, lim)
		}
	}
	stop()
	return Outcome{}, codeError(err, timeout, lim)
}

// watch interrupts the code at its time limit, when ctx ends, or when the
// heap has grown past limit; the returned function ends the watch.
func watch(ctx context.Context, vm *goja.Runtime, timeout time.Duration, limit uint64) func() {
	done := make(chan struct{})
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(sample)
		base := sample[0].Value.Uint64()
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				vm.Interrupt(ctx.Err())
				return
			case <-deadline.C:
				vm.Interrupt(errCodeTimeout)
				return
			case <-tick.C:
				metrics.Read(sample)
				if now := sample[0].Value.Uint64(); now > base && now-base > limit {
					vm.Interrupt(errCodeMemory)
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// setGlobals gives the code the run's data and a console.
func setGlobals(vm *goja.Runtime, c Call, lim CodeLimits) error {
	steps := map[string]StepData{}
	for id, st := range c.Scope.Steps {
		steps[id] = StepData{Data: nonEmpty(st.Data), Meta: st.Meta}
	}
	stepsJSON, err := json.Marshal(steps)
	if err != nil {
		return &StepError{Code: "INTERNAL", Message: "The run's data could not be read"}
	}
	metaJSON, _ := json.Marshal(c.Scope.Meta)
	for name, raw := range map[string][]byte{"$input": nonEmpty(c.Input), "$trigger": nonEmpty(c.Scope.Trigger), "$steps": stepsJSON, "$meta": nonEmpty(metaJSON)} {
		v, err := jsonParse(vm, string(raw))
		if err != nil {
			return &StepError{Code: "INTERNAL", Message: "The run's data could not be given to the code"}
		}
		if err := vm.Set(name, v); err != nil {
			return err
		}
	}
	console := vm.NewObject()
	log := func(call goja.FunctionCall) goja.Value {
		parts := make([]string, len(call.Arguments))
		for i, a := range call.Arguments {
			if s, ok := a.Export().(string); ok {
				parts[i] = s
				continue
			}
			s, err := jsonStringify(vm, a)
			if err != nil || goja.IsUndefined(s) {
				parts[i] = a.String()
				continue
			}
			parts[i] = s.String()
		}
		if c.Console != nil && c.Console.Len() < lim.MaxConsoleBytes {
			line := strings.Join(parts, " ") + "\n"
			if room := lim.MaxConsoleBytes - c.Console.Len(); len(line) > room {
				line = line[:room] + "…\n"
			}
			c.Console.WriteString(line)
		}
		return goja.Undefined()
	}
	for _, name := range []string{"log", "info", "warn", "error"} {
		if err := console.Set(name, log); err != nil {
			return err
		}
	}
	return vm.Set("console", console)
}

func jsonParse(vm *goja.Runtime, s string) (goja.Value, error) {
	parse, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
	if !ok {
		return nil, errors.New("no JSON.parse")
	}
	return parse(goja.Undefined(), vm.ToValue(s))
}

func jsonStringify(vm *goja.Runtime, v goja.Value) (goja.Value, error) {
	stringify, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	if !ok {
		return nil, errors.New("no JSON.stringify")
	}
	return stringify(goja.Undefined(), v)
}

// codeOutput turns the returned value's JSON into the step's output.
func codeOutput(s goja.Value, lim CodeLimits) (Outcome, error) {
	if s == nil || goja.IsUndefined(s) || goja.IsNull(s) {
		return Outcome{Output: nil}, nil
	}
	out := s.String()
	if len(out) > lim.MaxOutputBytes {
		return Outcome{}, &StepError{Code: "CODE_OUTPUT_TOO_LARGE", Message: fmt.Sprintf("The code returned %d bytes of JSON; a step's output is at most %d", len(out), lim.MaxOutputBytes)}
	}
	return Outcome{Output: json.RawMessage(out)}, nil
}

// codeError says why the code stopped.
func codeError(err error, timeout time.Duration, lim CodeLimits) error {
	var intr *goja.InterruptedError
	if errors.As(err, &intr) {
		switch intr.Value() {
		case errCodeTimeout:
			return &StepError{Code: "CODE_TIMEOUT", Message: fmt.Sprintf("The code ran longer than %s and was stopped", timeout)}
		case errCodeMemory:
			return &StepError{Code: "CODE_MEMORY_LIMIT", Message: fmt.Sprintf("The code used more than %d MiB of memory and was stopped", lim.MemoryBytes>>20)}
		}
		return &StepError{Code: "TIMEOUT", Message: "The step was stopped before the code finished", Retryable: true}
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return &StepError{Code: "CODE_ERROR", Message: shiftLines(ex.Error())}
	}
	var so *goja.StackOverflowError
	if errors.As(err, &so) {
		return &StepError{Code: "CODE_ERROR", Message: "The code called itself too deeply (more than 2000 calls)"}
	}
	return &StepError{Code: "CODE_ERROR", Message: shiftLines(err.Error())}
}

// codePosition matches a position in the wrapped source, as goja writes
// it in errors ("code:3:7", "code: Line 3:7") and stacks.
var codePosition = regexp.MustCompile(`code:(?: Line )?(\d+)(?::\d+)?`)

// shiftLines rewrites positions to the user's line numbers (the wrapper
// adds one line before theirs).
func shiftLines(msg string) string {
	return codePosition.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(codePosition.FindStringSubmatch(m)[1])
		return fmt.Sprintf("line %d", max(n-1, 1))
	})
}
