package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"taskjuice/internal/expr"
)

// Expressions evaluates node configs with JSONata templates: every
// {{ expression }} in a config's strings sees $trigger, $steps (each
// { data, meta } by node id), $input and $meta, within the limits.
func Expressions(lim expr.Limits) Evaluator {
	return func(ctx context.Context, config json.RawMessage, s Scope) (json.RawMessage, error) {
		env := expr.Env{Steps: map[string]expr.StepResult{}, Meta: s.Meta}
		if err := decodeAny(s.Trigger, &env.Trigger); err != nil {
			return nil, err
		}
		if err := decodeAny(s.Input, &env.Input); err != nil {
			return nil, err
		}
		for id, st := range s.Steps {
			var data any
			if err := decodeAny(st.Data, &data); err != nil {
				return nil, err
			}
			env.Steps[id] = expr.StepResult{Data: data, Meta: st.Meta}
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
