package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"taskjuice/internal/workflow"
)

// Loops run their "each" path once per item, one iteration after another,
// then their "done" path. Inside iteration i of loop L, a body node's
// frontier entry (and step row) is "node@L#i"; expressions see the node
// under its own id in $steps (its latest iteration) and the current item in
// $meta.loop.

type iteration struct {
	loop  string
	index int
}

// EntryNode is the node id of a frontier entry or step row ("node",
// "node@loop#i", or an agent's "node!k" and "node!k.tool").
func EntryNode(entry string) string {
	if i := strings.IndexAny(entry, "@!"); i >= 0 {
		return entry[:i]
	}
	return entry
}

func entryIteration(entry string) iteration {
	i := strings.IndexByte(entry, '@')
	if i < 0 {
		return iteration{}
	}
	loop, idx, ok := strings.Cut(entry[i+1:], "#")
	n, err := strconv.Atoi(idx)
	if !ok || err != nil {
		return iteration{}
	}
	return iteration{loop: loop, index: n}
}

func inIteration(node string, it iteration) string {
	return fmt.Sprintf("%s@%s#%d", node, it.loop, it.index)
}

// loop evaluates the items and stops the run at a sensible size.
func loop(_ context.Context, c Call) (Outcome, error) {
	var cfg struct {
		Items    any `json:"items"`
		MaxItems int `json:"maxItems"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	if s, ok := cfg.Items.(string); ok {
		// A template that rendered a list as text.
		var v any
		if json.Unmarshal([]byte(s), &v) == nil {
			cfg.Items = v
		}
	}
	items, ok := cfg.Items.([]any)
	if cfg.Items == nil {
		items, ok = []any{}, true
	}
	if !ok {
		return Outcome{}, &StepError{Code: "LOOP_NOT_A_LIST", Message: "The loop's items are not a list"}
	}
	limit := cfg.MaxItems
	if limit <= 0 || limit > workflow.MaxLoopItems {
		limit = workflow.MaxLoopItems
	}
	if len(items) > limit {
		return Outcome{}, &StepError{Code: "LOOP_TOO_LONG", Message: fmt.Sprintf("The loop has %d items; it runs at most %d", len(items), limit)}
	}
	fmt.Fprintf(c.Console, "%d items\n", len(items))
	return Outcome{Output: map[string]any{"items": items, "count": len(items)}}, nil
}

// loopItems are the items a loop node produced.
func (c *claimed) loopItems(loopEntry string) []any {
	s, ok := c.last[loopEntry]
	if !ok || s.Status != StepCompleted {
		return nil
	}
	var v struct {
		Items []any `json:"items"`
	}
	_ = json.Unmarshal(s.Output, &v)
	return v.Items
}

// advanceFrontier is the frontier after entry completed with out: the rest,
// plus what comes next — the node's successors, a loop's first iteration,
// the next iteration, or the loop's done path.
func (c *claimed) advanceFrontier(node workflow.Node, entry string, out Outcome) ([]string, error) {
	g := c.g
	next := append([]string{}, c.frontier[1:]...)
	add := func(ids ...string) {
		for _, id := range ids {
			if !contains(next, id) {
				next = append(next, id)
			}
		}
	}
	it := entryIteration(entry)
	if node.Kind == workflow.NodeAgent {
		if it.loop != "" {
			return nil, &StepError{Code: "NOT_SUPPORTED", Message: "An agent inside a loop cannot run yet"}
		}
		turn, done, err := agentNext(node, entry, out)
		if err != nil {
			return nil, err
		}
		if !done {
			// The agent's next turn comes before anything else.
			return append([]string{turn}, next...), nil
		}
		add(g.Successors(node.ID, out.Path)...)
		return next, nil
	}
	if node.Kind == workflow.NodeLoop {
		if it.loop != "" {
			return nil, &StepError{Code: "NOT_SUPPORTED", Message: "A loop inside a loop cannot run yet"}
		}
		count := 0
		if m, ok := out.Output.(map[string]any); ok {
			if n, ok := m["count"].(int); ok {
				count = n
			}
		}
		if count == 0 {
			add(g.Successors(node.ID, "done")...)
			return next, nil
		}
		for _, n := range g.Successors(node.ID, "each") {
			add(inIteration(n, iteration{loop: node.ID, index: 0}))
		}
		return next, nil
	}
	if it.loop == "" {
		add(g.Successors(node.ID, out.Path)...)
		return next, nil
	}
	// Inside an iteration: stay within the body.
	in := g.LoopBody(it.loop)
	for _, n := range g.Successors(node.ID, out.Path) {
		if in[n] {
			add(inIteration(n, it))
		}
	}
	suffix := "@" + it.loop + "#" + strconv.Itoa(it.index)
	for _, f := range next {
		if strings.HasSuffix(f, suffix) {
			return next, nil // this iteration still has steps to run
		}
	}
	if it.index+1 < len(c.loopItems(it.loop)) {
		for _, n := range g.Successors(it.loop, "each") {
			add(inIteration(n, iteration{loop: it.loop, index: it.index + 1}))
		}
		return next, nil
	}
	add(g.Successors(it.loop, "done")...)
	return next, nil
}
