package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"taskjuice/internal/workflow"
)

// Parallel and Merge. A Parallel step starts every step its edges lead
// to; the run's frontier then holds one entry per arm, and the worker
// takes them in turn, a step of each arm after the other. A step with two
// or more steps leading into it (a Merge, or any join) waits while another
// entry of the frontier can still reach it, so it runs once, after every
// arm that can arrive has arrived.

// arm is one arm's output as a Merge sees it.
type arm struct {
	Step string          `json:"step"`
	Data json.RawMessage `json:"data"`
}

func parallelNode(_ context.Context, c Call) (Outcome, error) {
	fmt.Fprintln(c.Console, "starting the arms")
	return Outcome{Output: map[string]any{"started": true}}, nil
}

// waitsForArms reports whether the frontier's head is a join that another
// entry of the frontier can still reach.
func (c *claimed) waitsForArms(node workflow.Node) bool {
	if len(c.g.Predecessors(node.ID)) < 2 {
		return false
	}
	for _, other := range c.frontier[1:] {
		id := EntryNode(other)
		if id != node.ID && c.g.Reaches(id, node.ID) {
			return true
		}
	}
	return false
}

// nextReady moves joins that still wait for arms behind the entries that
// can go now; it reports false when none can (which an acyclic graph
// never leaves).
func (c *claimed) nextReady() bool {
	for range len(c.frontier) {
		node, ok := c.g.Node(EntryNode(c.frontier[0]))
		if !ok || !c.waitsForArms(node) {
			return true
		}
		c.frontier = append(c.frontier[1:], c.frontier[0])
	}
	return false
}

// mergeInput is what a Merge step is given: the output of each step
// leading into it that ran, in the order of its edges.
func mergeInput(g *workflow.Graph, id string, s Scope) json.RawMessage {
	arms := []arm{}
	for _, p := range g.Predecessors(id) {
		if st, ok := s.Steps[p]; ok {
			arms = append(arms, arm{Step: p, Data: nonEmpty(st.Data)})
		}
	}
	b, _ := json.Marshal(arms)
	return b
}

// armItems reads an arm's items: its output when a list, its "items"
// when it has them, else the output as one item.
func armItems(raw json.RawMessage) []any {
	var v any
	if err := json.Unmarshal(nonEmpty(raw), &v); err != nil {
		return nil
	}
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		if items, ok := x["items"].([]any); ok {
			return items
		}
	case nil:
		return nil
	}
	return []any{v}
}

func mergeNode(_ context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.MergeConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	var arms []arm
	if err := json.Unmarshal(nonEmpty(c.Input), &arms); err != nil {
		return Outcome{}, &StepError{Code: "MERGE_INPUT", Message: "The arms' outputs could not be read"}
	}
	lists := make([][]any, len(arms))
	byStep := map[string]json.RawMessage{}
	for i, a := range arms {
		lists[i] = armItems(a.Data)
		byStep[a.Step] = a.Data
	}
	var items []any
	switch cfg.Mode {
	case "", "append":
		for _, l := range lists {
			items = append(items, l...)
		}
	case "position":
		items = mergeByPosition(lists)
	case "key":
		if items, err = mergeByKey(lists, strings.TrimSpace(cfg.Key)); err != nil {
			return Outcome{}, err
		}
	default:
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: "Merge by append, position or key"}
	}
	if items == nil {
		items = []any{}
	}
	fmt.Fprintf(c.Console, "%d arms, %d items\n", len(arms), len(items))
	return Outcome{Output: map[string]any{"items": items, "count": len(items), "arms": byStep}}, nil
}

// mergeByPosition merges the arms' i-th items into one (objects' fields
// together; a later arm's field wins; an item that is not an object is
// kept under the arm's index).
func mergeByPosition(lists [][]any) []any {
	n := 0
	for _, l := range lists {
		n = max(n, len(l))
	}
	out := make([]any, n)
	for i := range n {
		m := map[string]any{}
		for a, l := range lists {
			if i >= len(l) {
				continue
			}
			if obj, ok := l[i].(map[string]any); ok {
				for k, v := range obj {
					m[k] = v
				}
			} else {
				m[fmt.Sprint(a)] = l[i]
			}
		}
		out[i] = m
	}
	return out
}

// mergeByKey merges the objects that share the value of key, in the
// order each value was first seen; an item without it is an error.
func mergeByKey(lists [][]any, key string) ([]any, error) {
	var order []string
	merged := map[string]map[string]any{}
	for a, l := range lists {
		for i, it := range l {
			obj, ok := it.(map[string]any)
			if !ok || obj[key] == nil {
				return nil, &StepError{Code: "MERGE_KEY_MISSING", Message: fmt.Sprintf("Item %d of arm %d has no %q to merge on", i, a+1, key)}
			}
			k, _ := json.Marshal(obj[key])
			m, seen := merged[string(k)]
			if !seen {
				m = map[string]any{}
				merged[string(k)] = m
				order = append(order, string(k))
			}
			for f, v := range obj {
				m[f] = v
			}
		}
	}
	out := make([]any, len(order))
	for i, k := range order {
		out[i] = merged[k]
	}
	return out, nil
}
