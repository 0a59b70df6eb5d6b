package workflow

import (
	"bytes"
	"encoding/json"
	"sort"
)

// Diff is what changed between two graphs: steps (the trigger included)
// added, removed and changed, with the fields that changed, and the edges
// added and removed.
type Diff struct {
	Added        []string     `json:"added"`
	Removed      []string     `json:"removed"`
	Changed      []StepChange `json:"changed"`
	EdgesAdded   []Edge       `json:"edgesAdded"`
	EdgesRemoved []Edge       `json:"edgesRemoved"`
}

// StepChange is one step present in both graphs whose settings differ:
// "kind", "name", "connection", or "config.<key>" for each top-level key of
// its settings that was added, removed or changed.
type StepChange struct {
	NodeID string   `json:"nodeId"`
	Fields []string `json:"fields"`
}

// DiffGraphs compares graph a (older) with graph b (newer).
func DiffGraphs(a, b Graph) Diff {
	d := Diff{Added: []string{}, Removed: []string{}, Changed: []StepChange{}, EdgesAdded: []Edge{}, EdgesRemoved: []Edge{}}
	older, newer := nodesByID(a), nodesByID(b)
	for _, n := range allNodes(b) {
		o, ok := older[n.ID]
		if !ok {
			d.Added = append(d.Added, n.ID)
			continue
		}
		if fields := changedFields(o, n); len(fields) > 0 {
			d.Changed = append(d.Changed, StepChange{NodeID: n.ID, Fields: fields})
		}
	}
	for _, n := range allNodes(a) {
		if _, ok := newer[n.ID]; !ok {
			d.Removed = append(d.Removed, n.ID)
		}
	}
	oldEdges, newEdges := map[Edge]bool{}, map[Edge]bool{}
	for _, e := range a.Edges {
		oldEdges[e] = true
	}
	for _, e := range b.Edges {
		newEdges[e] = true
		if !oldEdges[e] {
			d.EdgesAdded = append(d.EdgesAdded, e)
		}
	}
	for _, e := range a.Edges {
		if !newEdges[e] {
			d.EdgesRemoved = append(d.EdgesRemoved, e)
		}
	}
	return d
}

func allNodes(g Graph) []Node {
	var out []Node
	if g.Trigger != nil {
		out = append(out, *g.Trigger)
	}
	return append(out, g.Nodes...)
}

func nodesByID(g Graph) map[string]Node {
	m := map[string]Node{}
	for _, n := range allNodes(g) {
		m[n.ID] = n
	}
	return m
}

func changedFields(a, b Node) []string {
	var out []string
	if a.Kind != b.Kind {
		out = append(out, "kind")
	}
	if a.Name != b.Name {
		out = append(out, "name")
	}
	ca, _ := json.Marshal(a.Connection)
	cb, _ := json.Marshal(b.Connection)
	if !bytes.Equal(ca, cb) {
		out = append(out, "connection")
	}
	if a.Redact != b.Redact {
		out = append(out, "redact")
	}
	ra, _ := json.Marshal(a.Retry)
	rb, _ := json.Marshal(b.Retry)
	if !bytes.Equal(ra, rb) {
		out = append(out, "retry")
	}
	return append(out, configChanges(a.Config, b.Config)...)
}

// configChanges names the top-level keys of two settings objects that
// differ ("config" when either is not an object).
func configChanges(a, b json.RawMessage) []string {
	var ma, mb map[string]json.RawMessage
	if len(a) > 0 && json.Unmarshal(a, &ma) != nil || len(b) > 0 && json.Unmarshal(b, &mb) != nil {
		if !bytes.Equal(compact(a), compact(b)) {
			return []string{"config"}
		}
		return nil
	}
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		va, oka := ma[k]
		vb, okb := mb[k]
		if oka != okb || !bytes.Equal(compact(va), compact(vb)) {
			out = append(out, "config."+k)
		}
	}
	sort.Strings(out)
	return out
}

// compact normalizes a JSON value so formatting and key order do not read
// as a change.
func compact(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	out, _ := json.Marshal(v)
	return out
}
