package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"taskjuice/internal/expr"
	"taskjuice/internal/workflow"
)

// Filter, Sort and Stop and Error: steps that shape the items a run
// carries, or end it on purpose.

// itemList reads a Filter's or Sort's evaluated items: a list, a list
// rendered as text, or nothing (an empty list).
func itemList(v any) ([]any, error) {
	if s, ok := v.(string); ok {
		var parsed any
		if json.Unmarshal([]byte(s), &parsed) == nil {
			v = parsed
		}
	}
	switch x := v.(type) {
	case nil:
		return []any{}, nil
	case []any:
		if len(x) > workflow.MaxLoopItems {
			return nil, &StepError{Code: "TOO_MANY_ITEMS", Message: fmt.Sprintf("The step has %d items; it takes at most %d", len(x), workflow.MaxLoopItems)}
		}
		return x, nil
	}
	return nil, &StepError{Code: "NOT_A_LIST", Message: "The items are not a list"}
}

// perItem compiles an expression evaluated against each item.
func perItem(field, src string) (*expr.Expr, error) {
	e, err := expr.Compile(src)
	if err != nil {
		return nil, &StepError{Code: "EXPRESSION_SYNTAX", Message: fmt.Sprintf("The %s does not parse: %s", field, err.Error())}
	}
	return e, nil
}

// evalItem evaluates e against one item ($ is the item, $index its
// position).
func evalItem(ctx context.Context, e *expr.Expr, item any, index int) (any, error) {
	v, err := e.Eval(ctx, expr.Env{Input: item, Self: item, Meta: map[string]any{"index": index}}, expr.Limits{})
	if err != nil {
		var ee *expr.Error
		if errors.As(err, &ee) {
			return nil, &StepError{Code: ee.Code, Message: fmt.Sprintf("Item %d: %s", index, ee.Message)}
		}
		return nil, err
	}
	return v, nil
}

// itemValues reads a Filter's or Sort's items and evaluates, against each,
// the per-item expression of its setting field (label names it in errors).
func itemValues(ctx context.Context, c Call, field, label string) (items, values []any, err error) {
	var cfg map[string]any
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return nil, nil, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	src, ok := cfg[field].(string)
	if !ok && cfg[field] != nil {
		return nil, nil, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("The %s is not text", label)}
	}
	if items, err = itemList(cfg["items"]); err != nil {
		return nil, nil, err
	}
	e, err := perItem(label, src)
	if err != nil {
		return nil, nil, err
	}
	values = make([]any, len(items))
	for i, it := range items {
		if values[i], err = evalItem(ctx, e, it, i); err != nil {
			return nil, nil, err
		}
	}
	return items, values, nil
}

func filterNode(ctx context.Context, c Call) (Outcome, error) {
	items, values, err := itemValues(ctx, c, "condition", "condition")
	if err != nil {
		return Outcome{}, err
	}
	kept := []any{}
	for i, it := range items {
		if truthy(values[i]) {
			kept = append(kept, it)
		}
	}
	fmt.Fprintf(c.Console, "kept %d of %d items\n", len(kept), len(items))
	return Outcome{Output: map[string]any{"items": kept, "count": len(kept), "dropped": len(items) - len(kept)}}, nil
}

func sortNode(ctx context.Context, c Call) (Outcome, error) {
	items, keys, err := itemValues(ctx, c, "by", "sort key")
	if err != nil {
		return Outcome{}, err
	}
	var order struct {
		Order string `json:"order"`
	}
	_ = json.Unmarshal(nonEmpty(c.Config), &order) // read whole by itemValues
	desc := order.Order == "desc"
	type keyed struct {
		key  any
		item any
	}
	ks := make([]keyed, len(items))
	for i, it := range items {
		ks[i] = keyed{keys[i], it}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		// Missing values go last in either order.
		if a.key == nil || b.key == nil {
			return boolOrder(a.key == nil, b.key == nil)
		}
		r := compareKeys(a.key, b.key)
		if desc {
			return -r
		}
		return r
	})
	out := make([]any, len(ks))
	for i, k := range ks {
		out[i] = k.item
	}
	return Outcome{Output: map[string]any{"items": out, "count": len(out)}}, nil
}

// boolOrder orders false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// compareKeys orders sort keys: numbers by value, before text (by its
// characters), before anything else (by its JSON).
func compareKeys(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case float64, int, int64, json.Number:
			return 0
		case string:
			return 1
		case bool:
			return 2
		}
		return 3
	}
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch ra {
	case 0:
		fa, fb := number(a), number(b)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	case 1:
		return strings.Compare(a.(string), b.(string))
	case 2:
		return boolOrder(!a.(bool), !b.(bool))
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return strings.Compare(string(ja), string(jb))
}

func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return 0
}

// stopError fails the run on purpose, with the step's code and message.
func stopError(_ context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.StopErrorConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	code := strings.TrimSpace(cfg.Code)
	if code == "" {
		code = "STOPPED"
	}
	msg := strings.TrimSpace(cfg.Message)
	if msg == "" {
		msg = "The workflow stopped the run"
	}
	fmt.Fprintf(c.Console, "stopping the run: %s\n", code)
	return Outcome{}, &StepError{Code: code, Message: msg, Retryable: false}
}
