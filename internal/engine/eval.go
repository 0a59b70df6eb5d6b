package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"taskjuice/internal/expr"
)

// Expressions evaluates node configs with JSONata templates: every
// {{ expression }} in a config's strings sees $trigger, $steps (each
// { data, meta } by node id), $input and $meta, within the limits.
func Expressions(lim expr.Limits) Evaluator {
	return func(ctx context.Context, config json.RawMessage, s Scope) (json.RawMessage, error) {
		// Decoding every step's output for every step costs more than the
		// expressions themselves, so a config gets only the variables it
		// names. A variable is only reached by its name ($steps, ...); a
		// config written with \u escapes might hide one, and gets all.
		all := bytes.Contains(config, []byte(`\u`))
		uses := func(name string) bool { return all || bytes.Contains(config, []byte(name)) }
		env := expr.Env{Steps: map[string]expr.StepResult{}}
		if err := decodeAny(s.Input, &env.Input); err != nil {
			return nil, err
		}
		if uses("$trigger") {
			if err := decodeAny(s.Trigger, &env.Trigger); err != nil {
				return nil, err
			}
		}
		if uses("$meta") {
			env.Meta = plainMap(s.Meta)
		}
		if uses("$steps") {
			for id, st := range s.Steps {
				var data any
				if err := decodeAny(st.Data, &data); err != nil {
					return nil, err
				}
				env.Steps[id] = expr.StepResult{Data: data, Meta: plainMap(st.Meta)}
			}
		}
		out, err := expr.EvalJSON(ctx, config, env, lim)
		if err != nil {
			var ee *expr.Error
			if errors.As(err, &ee) {
				return nil, &StepError{Code: ee.Code, Message: ee.Message}
			}
			return nil, err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, &StepError{Code: "EXPRESSION_FAILED", Message: "The evaluated settings are not JSON: " + err.Error()}
		}
		return b, nil
	}
}

func decodeAny(raw json.RawMessage, v *any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode run data: %w", err)
	}
	return nil
}

// plainMap is m as expressions see it, as if it had gone through JSON
// (numbers float64, times RFC 3339 text), without the trip: the engine's
// metadata holds few types. Whatever else it holds is left to expr, which
// converts through JSON.
func plainMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case int:
			out[k] = float64(x)
		case time.Time:
			out[k] = x.Format(time.RFC3339Nano)
		case map[string]any:
			out[k] = plainMap(x)
		default:
			out[k] = v
		}
	}
	return out
}
