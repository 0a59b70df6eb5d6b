package web

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"

	"taskjuice/internal/engine"
	"taskjuice/internal/workflow"
)

// pickItem is one value of a sample the data picker offers: the
// expression that reaches it and the value it had.
type pickItem struct {
	Expr  string
	Value string
}

// maxPicks bounds the values offered per sample.
const maxPicks = 60

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pickerOf lists the values of the trigger's sample and of each earlier
// step's sample, each with the expression that reaches it.
func pickerOf(g workflow.Graph, upTo int, samples map[string]engine.Sample) []pickItem {
	var items []pickItem
	if g.Trigger != nil {
		if s, ok := samples[g.Trigger.ID]; ok {
			items = appendPicks(items, "$trigger", s.Data)
		}
	}
	for _, n := range g.Nodes[:upTo] {
		if s, ok := samples[n.ID]; ok && s.Error == nil {
			items = appendPicks(items, "$steps."+n.ID+".data", s.Data)
		}
	}
	return items
}

func appendPicks(items []pickItem, root string, data json.RawMessage) []pickItem {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return items
	}
	var out []pickItem
	walkPicks(root, v, &out)
	return append(items, out...)
}

func walkPicks(path string, v any, out *[]pickItem) {
	if len(*out) >= maxPicks {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			step := "." + k
			if !plainKey.MatchString(k) {
				step = ".`" + k + "`"
			}
			walkPicks(path+step, t[k], out)
		}
	case []any:
		if len(t) > 0 {
			walkPicks(path+"[0]", t[0], out)
		}
	default:
		b, _ := json.Marshal(t)
		*out = append(*out, pickItem{Expr: fmt.Sprintf("{{ %s }}", path), Value: string(b)})
	}
}
