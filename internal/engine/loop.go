package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"taskjuice/internal/workflow"
)

// Loops run their "each" path once per item, one iteration after another,
// then their "done" path. Inside iteration i of loop L, a body node's
// frontier entry (and step row) is "node@L#i"; inside a loop nested in
// it, iteration j of loop M adds "@M#j" ("node@L#i@M#j"). Expressions see
// a node under its own id in $steps (its latest iteration) and the
// current item of the innermost loop in $meta.loop.

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

// iterationsOf reads the iterations an entry runs in, outermost first.
func iterationsOf(entry string) []iteration {
	if i := strings.IndexByte(entry, '!'); i >= 0 {
		entry = entry[:i]
	}
	parts := strings.Split(entry, "@")
	var out []iteration
	for _, p := range parts[1:] {
		loop, idx, ok := strings.Cut(p, "#")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil {
			return nil
		}
		out = append(out, iteration{loop: loop, index: n})
	}
	return out
}

// entryIteration is the innermost iteration an entry runs in (none: a
// zero iteration).
func entryIteration(entry string) iteration {
	its := iterationsOf(entry)
	if len(its) == 0 {
		return iteration{}
	}
	return its[len(its)-1]
}

// suffixOf writes iterations as an entry's suffix ("@L#0@M#2").
func suffixOf(its []iteration) string {
	var b strings.Builder
	for _, it := range its {
		fmt.Fprintf(&b, "@%s#%d", it.loop, it.index)
	}
	return b.String()
}

// loopEntryOf is the entry of the innermost loop of its: the loop node
// within the iterations around it.
func loopEntryOf(its []iteration) string {
	cur := its[len(its)-1]
	return cur.loop + suffixOf(its[:len(its)-1])
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
	next := make([]string, 0, len(c.frontier))
	for i, f := range c.frontier {
		if f == entry && !slices.Contains(c.frontier[:i], entry) {
			continue
		}
		next = append(next, f)
	}
	add := func(ids ...string) {
		for _, id := range ids {
			if !contains(next, id) {
				next = append(next, id)
			}
		}
	}
	its := iterationsOf(entry)
	if node.Kind == workflow.NodeAgent {
		if len(its) > 0 {
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
		count := 0
		if m, ok := out.Output.(map[string]any); ok {
			if n, ok := m["count"].(int); ok {
				count = n
			}
		}
		if count > 0 {
			first := suffixOf(append(append([]iteration(nil), its...), iteration{loop: node.ID, index: 0}))
			for _, n := range g.Successors(node.ID, "each") {
				add(n + first)
			}
			return next, nil
		}
		c.completed(&next, node.ID, "done", its)
		return next, nil
	}
	c.completed(&next, node.ID, out.Path, its)
	return next, nil
}

// completed moves the frontier on after node id took path within the
// iterations its: to its successors (inside an iteration, those in the
// loop's body); when that was the iteration's last step, to the next
// iteration, or, after the last one, to the loop's done path within the
// iterations around it.
func (c *claimed) completed(next *[]string, id, path string, its []iteration) {
	g := c.g
	add := func(ids ...string) {
		for _, e := range ids {
			if !contains(*next, e) {
				*next = append(*next, e)
			}
		}
	}
	if len(its) == 0 {
		add(g.Successors(id, path)...)
		return
	}
	cur := its[len(its)-1]
	sfx := suffixOf(its)
	in := g.LoopBody(cur.loop)
	for _, n := range g.Successors(id, path) {
		if in[n] {
			add(n + sfx)
		}
	}
	for _, f := range *next {
		if strings.HasSuffix(f, sfx) || strings.Contains(f, sfx+"@") {
			return // this iteration still has steps to run
		}
	}
	outer := its[:len(its)-1]
	if cur.index+1 < len(c.loopItems(loopEntryOf(its))) {
		nextIt := suffixOf(append(append([]iteration(nil), outer...), iteration{loop: cur.loop, index: cur.index + 1}))
		for _, n := range g.Successors(cur.loop, "each") {
			add(n + nextIt)
		}
		return
	}
	c.completed(next, cur.loop, "done", outer)
}
