package web

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/workflow"
)

// Where steps go in the editor's list. A Parallel step's arms are the
// steps listed after it, as many in each arm as its settings say; each arm
// runs its steps in order and leads to the step after the last arm, where
// they join. Adding, duplicating or deleting a step inside an arm makes
// that arm longer or shorter; a "+" on any arrow of the picture adds a
// step on that arrow, where the list can say so.

// armSpan is one arm of a Parallel step: the steps first..last of the
// list (indexes into g.Nodes).
type armSpan struct {
	parallel, arm, first, last int
}

// armSpans lists every Parallel step's arms, in the order of the list.
func armSpans(g workflow.Graph) []armSpan {
	var out []armSpan
	for i, n := range g.Nodes {
		if n.Kind != workflow.NodeParallel {
			continue
		}
		at := i + 1
		for a, k := range armSteps(n) {
			if at >= len(g.Nodes) {
				break
			}
			last := min(at+k-1, len(g.Nodes)-1)
			out = append(out, armSpan{parallel: i, arm: a, first: at, last: last})
			at = last + 1
		}
	}
	return out
}

// armSteps is how many steps each arm of a Parallel step has.
func armSteps(n workflow.Node) []int {
	if c, err := workflow.DecodeConfig(n); err == nil {
		if p, ok := c.(*workflow.ParallelConfig); ok {
			return p.ArmSteps()
		}
	}
	return workflow.ParallelConfig{}.ArmSteps()
}

// armJoins maps the last step of each arm to the index of its join, and
// each Parallel step to its arms' first steps.
func armJoins(spans []armSpan) (joins map[int]int, firsts map[int][]int) {
	joins, firsts = map[int]int{}, map[int][]int{}
	end := map[int]int{}
	for _, s := range spans {
		end[s.parallel] = max(end[s.parallel], s.last)
		firsts[s.parallel] = append(firsts[s.parallel], s.first)
	}
	for _, s := range spans {
		joins[s.last] = end[s.parallel] + 1
	}
	return joins, firsts
}

// armAt is the innermost arm holding the step at index i.
func armAt(spans []armSpan, i int) (armSpan, bool) {
	var best armSpan
	found := false
	for _, s := range spans {
		if s.first <= i && i <= s.last && (!found || s.last-s.first < best.last-best.first) {
			best, found = s, true
		}
	}
	return best, found
}

// resizeArm adds d steps to an arm of the Parallel step at index p.
func resizeArm(g *workflow.Graph, p, arm, d int) {
	n := g.Nodes[p]
	c := workflow.ParallelConfig{}
	if cfg, err := workflow.DecodeConfig(n); err == nil {
		c = *cfg.(*workflow.ParallelConfig)
	}
	steps := c.ArmSteps()
	if arm >= len(steps) {
		return
	}
	steps[arm] += d
	if steps[arm] <= 0 {
		steps = append(steps[:arm], steps[arm+1:]...)
	}
	c.Arms, c.Steps = len(steps), steps
	if allOnes(steps) {
		c.Steps = nil
	}
	b, _ := json.Marshal(c)
	g.Nodes[p].Config = b
}

func allOnes(steps []int) bool {
	for _, k := range steps {
		if k != 1 {
			return false
		}
	}
	return true
}

// placement is where a step added on an arrow goes: its index in the
// list, the arm it lengthens, and the path of another step that is to
// lead to it (a Branch's "false", a Switch case).
type placement struct {
	at       int
	arm      *armSpan
	from     string
	fromPath string
}

// errNoPlace refuses a "+" whose arrow the list cannot take a step on.
var errNoPlace = apperr.Invalid("after", "A step cannot be added on that path here; add it after the step the path leads to, or at the end.")

// place says where a step added on the arrow leaving after by path (to
// the step to) goes; no after: at the end.
func place(g workflow.Graph, after, path, to string) (placement, error) {
	switch {
	case after == "":
		return placement{at: len(g.Nodes)}, nil
	case g.Trigger != nil && after == g.Trigger.ID:
		return placement{at: 0}, nil
	}
	f := nodeIndex(g, after)
	if f < 0 {
		return placement{}, errNoStep
	}
	spans := armSpans(g)
	n := g.Nodes[f]
	if n.Kind == workflow.NodeParallel {
		// On an arm's first arrow: the step starts that arm.
		for _, s := range spans {
			if s.parallel == f && (g.Nodes[s.first].ID == to || to == "" && s.arm == 0) {
				return placement{at: s.first, arm: &s}, nil
			}
		}
		return placement{}, errNoPlace
	}
	if path == "" || path == mainPath(n.Kind) {
		if f == len(g.Nodes)-1 {
			// After the last step (maybe the last arm's last): at the end,
			// where the arms join.
			return placement{at: f + 1}, nil
		}
		return rightAfter(g, f), nil
	}
	return placeOnPath(g, spans, f, path, to)
}

// placeOnPath places a step on another path of the step at index f: just
// before the step the path leads to, which works when the step listed
// before that one does not go on to it (it ends the workflow, or leads to
// its arms' join).
func placeOnPath(g workflow.Graph, spans []armSpan, f int, path, to string) (placement, error) {
	if !slices.Contains(extraPaths(g.Nodes[f]), path) {
		return placement{}, errNoPlace
	}
	id := target(g, g.Nodes[f].ID, path)
	if id == "" || (to != "" && to != id) {
		return placement{}, errNoPlace
	}
	t := nodeIndex(g, id)
	if t <= f+1 {
		return placement{}, errNoPlace
	}
	joins, _ := armJoins(spans)
	if _, ok := joins[t-1]; !ok && !endsOf(g)[g.Nodes[t-1].ID] {
		return placement{}, errNoPlace
	}
	p := placement{at: t, from: g.Nodes[f].ID, fromPath: path}
	for _, s := range spans {
		if s.first == t || joins[s.last] == t {
			return placement{}, errNoPlace // an arm's start or a join
		}
	}
	if s, ok := armAt(spans, t); ok {
		p.arm = &s
	}
	return p, nil
}

// rightAfter is the place right after the step at index i, in its arm.
func rightAfter(g workflow.Graph, i int) placement {
	p := placement{at: i + 1}
	if s, ok := armAt(armSpans(g), i); ok {
		p.arm = &s
	}
	return p
}

// takeOut removes the step at index i from the list, and from its arm.
func takeOut(g *workflow.Graph, i int) workflow.Node {
	n := g.Nodes[i]
	if s, ok := armAt(armSpans(*g), i); ok {
		resizeArm(g, s.parallel, s.arm, -1)
	}
	g.Nodes = append(g.Nodes[:i:i], g.Nodes[i+1:]...)
	return n
}

// roomForAStep refuses a step past the most a workflow holds.
func roomForAStep(g workflow.Graph) error {
	if len(g.Nodes) >= workflow.MaxNodes {
		return apperr.Invalid("kind", "A workflow holds at most "+strconv.Itoa(workflow.MaxNodes)+" steps.")
	}
	return nil
}

// insert puts n into g where p says, lengthening its arm and leading the
// chosen path to it.
func (p placement) insert(g *workflow.Graph, n workflow.Node) {
	g.Nodes = slices.Insert(g.Nodes, p.at, n)
	if p.arm != nil {
		resizeArm(g, p.arm.parallel, p.arm.arm, 1)
	}
	if p.from == "" {
		return
	}
	for i, e := range g.Edges {
		if e.From == p.from && e.When == p.fromPath {
			g.Edges[i].To = n.ID
		}
	}
}

// parseArms reads the Arms field: how many arms ("3", one step each) or
// the steps in each ("2, 1").
func parseArms(text string) (workflow.ParallelConfig, error) {
	text = strings.TrimSpace(text)
	if !strings.Contains(text, ",") {
		v, err := wholeNumber(text)
		return workflow.ParallelConfig{Arms: v}, err
	}
	var steps []int
	for _, part := range strings.Split(text, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || k < 1 {
			return workflow.ParallelConfig{}, errors.New("Give the steps in each arm as whole numbers of at least 1, e.g. 2, 1")
		}
		steps = append(steps, k)
	}
	return workflow.ParallelConfig{Arms: len(steps), Steps: steps}, nil
}

// armsText writes a Parallel's arms for its form.
func armsText(c workflow.ParallelConfig) string {
	if len(c.Steps) > 0 {
		parts := make([]string, len(c.Steps))
		for i, k := range c.Steps {
			parts[i] = strconv.Itoa(k)
		}
		return strings.Join(parts, ", ")
	}
	if c.Arms != 0 {
		return strconv.Itoa(c.Arms)
	}
	return ""
}

// plusOn reports whether the picture offers a "+" on the arrow e (where
// a step added there has a place in the list), and the path and step it
// names: only where the step it leaves does not say enough.
func plusOn(g workflow.Graph, spans []armSpan, e workflow.Edge) (path, to string, ok bool) {
	if g.Trigger != nil && e.From == g.Trigger.ID {
		return "", "", true
	}
	f := nodeIndex(g, e.From)
	if f < 0 {
		return "", "", false
	}
	switch n := g.Nodes[f]; {
	case n.Kind == workflow.NodeParallel:
		_, err := place(g, e.From, "", e.To)
		return "", e.To, err == nil
	case e.When == mainPath(n.Kind):
		return "", "", true
	}
	_, err := placeOnPath(g, spans, f, e.When, e.To)
	return e.When, e.To, err == nil
}

// insertion is what the "Add a step" form says of where it adds, when a
// "+" on the picture chose the place.
type insertion struct {
	After, Path, To string
	// Where says it in words: "after Find contact", "on Check's “false”
	// path".
	Where string
}

// insertionOf reads the place a "+" chose from the editor's query
// (insert, path, to); a place the draft no longer has is ignored.
func insertionOf(g workflow.Graph, q url.Values) insertion {
	in := insertion{After: q.Get("insert"), Path: q.Get("path"), To: q.Get("to")}
	if in.After == "" {
		return insertion{}
	}
	if _, err := place(g, in.After, in.Path, in.To); err != nil {
		return insertion{}
	}
	name := in.After
	if n, ok := g.Node(in.After); ok && n.Name != "" {
		name = n.Name
	} else if g.Trigger != nil && in.After == g.Trigger.ID {
		name = "the trigger"
	}
	n, _ := g.Node(in.After)
	switch {
	case in.Path != "" && in.Path != mainPath(n.Kind):
		in.Where = "on " + name + "’s “" + in.Path + "” path"
	case n.Kind == workflow.NodeParallel && in.To != "":
		to := in.To
		if t, ok := g.Node(in.To); ok && t.Name != "" {
			to = t.Name
		}
		in.Where = "at the start of " + name + "’s arm through " + to
	default:
		in.Where = "after " + name
	}
	return in
}
