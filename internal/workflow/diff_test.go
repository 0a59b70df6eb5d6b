package workflow

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDiffGraphs(t *testing.T) {
	a, err := ParseGraph([]byte(`{"schema": 1, "trigger": {"id": "start", "kind": "manual"},
		"nodes": [{"id": "post", "kind": "http", "config": {"method": "POST", "url": "https://a.example", "timeoutSeconds": 10}},
		          {"id": "gone", "kind": "delay", "config": {"duration": "1m"}}],
		"edges": [{"from": "start", "to": "post"}, {"from": "post", "to": "gone"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseGraph([]byte(`{"schema": 1, "trigger": {"id": "start", "kind": "webhook", "config": {"auth": "none"}},
		"nodes": [{"id": "post", "kind": "http", "name": "Notify", "config": {"timeoutSeconds": 10, "url": "https://b.example", "method": "POST"}},
		          {"id": "new", "kind": "delay", "config": {"duration": "1m"}}],
		"edges": [{"from": "start", "to": "post"}, {"from": "post", "to": "new"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := DiffGraphs(a, b)
	want := Diff{Added: []string{"new"}, Removed: []string{"gone"},
		Changed:      []StepChange{{NodeID: "start", Fields: []string{"kind", "config.auth"}}, {NodeID: "post", Fields: []string{"name", "config.url"}}},
		EdgesAdded:   []Edge{{From: "post", To: "new"}},
		EdgesRemoved: []Edge{{From: "post", To: "gone"}}}
	if !reflect.DeepEqual(d, want) {
		got, _ := json.Marshal(d)
		t.Fatalf("diff: %s", got)
	}
	if same := DiffGraphs(a, a); len(same.Added)+len(same.Removed)+len(same.Changed)+len(same.EdgesAdded)+len(same.EdgesRemoved) != 0 {
		t.Fatalf("a graph differs from itself: %+v", same)
	}
}
