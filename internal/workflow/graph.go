// Package workflow owns workflows, their numbered versions and the graph
// each version holds: one trigger plus nodes joined by edges. It validates
// a graph before it may be published (the publish gate) and keeps the
// workflow's status in step with its versions.
package workflow

import (
	"encoding/json"
	"fmt"
	"slices"
)

// SchemaVersion is the version of the graph document's shape.
const SchemaVersion = 1

// Graph is the document a version holds. As JSON:
//
//	{
//	  "schema": 1,
//	  "trigger": {"id": "start", "kind": "webhook", "config": {"auth": "bearer"}},
//	  "nodes": [
//	    {"id": "post", "kind": "action", "name": "Tell the team",
//	     "config": {"app": "sandbox-chat", "action": "post-message",
//	                "inputs": {"channel": "general", "text": "New lead: {{ $trigger.name }}"}},
//	     "connection": {"id": "0192…"}},
//	    {"id": "big", "kind": "branch", "config": {"condition": "{{ $trigger.amount > 1000 }}"}}
//	  ],
//	  "edges": [
//	    {"from": "start", "to": "post"},
//	    {"from": "post", "to": "big"},
//	    {"from": "big", "to": "alert", "when": "true"}
//	  ]
//	}
//
// Node ids name each node's output in expressions ($steps.post.data). An
// edge's "when" selects the outgoing path of a Branch ("true"/"false"), a
// Switch (a case name or "default") or a Loop ("each" for the body, "done"
// after the last item); other nodes have one unlabelled path. Loops are
// structural, so the graph is always acyclic.
type Graph struct {
	Schema  int    `json:"schema"`
	Trigger *Node  `json:"trigger"`
	Nodes   []Node `json:"nodes"`
	Edges   []Edge `json:"edges"`
}

// Node is the trigger or one step.
type Node struct {
	ID         string          `json:"id"`
	Kind       Kind            `json:"kind"`
	Name       string          `json:"name,omitempty"`
	Config     json.RawMessage `json:"config,omitempty"`
	Connection *Binding        `json:"connection,omitempty"`
	// Redact: "Don't store input and output". The step's row keeps
	// "[redacted]" for both (and no console); the steps after it see the
	// real output while the run goes on, the redacted value once it was
	// reloaded (after a wait or a restart).
	Redact bool `json:"redact,omitempty"`
	// Retry is how a step with an external effect (an app action, an HTTP
	// request, an AI step) retries a retryable failure; nil keeps the
	// default (3 attempts, the engine's backoff). Every attempt carries
	// the step's one idempotency key.
	Retry *RetryPolicy `json:"retry,omitempty"`
}

// Binding says where a node's connection comes from: a workspace
// connection, or "Client provides the connection" (a client connects the
// app from their portal).
type Binding struct {
	ID             string `json:"id,omitempty"`
	ClientProvides bool   `json:"clientProvides,omitempty"`
}

// Edge joins two nodes.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	When string `json:"when,omitempty"`
}

// Kind is a trigger or node kind.
type Kind string

// Trigger kinds.
const (
	TriggerManual   Kind = "manual"
	TriggerWebhook  Kind = "webhook"
	TriggerSchedule Kind = "schedule"
	// TriggerApp starts a run for each new item of an app trigger (the
	// catalog's Triggers), read through the node's connection.
	TriggerApp Kind = "app"
	// TriggerError starts a run for each failed run of the workflows that
	// name this one as their error workflow, with the failure as payload.
	TriggerError Kind = "error"
)

// Node kinds.
const (
	NodeAction       Kind = "action"
	NodeHTTP         Kind = "http"
	NodeBranch       Kind = "branch"
	NodeSwitch       Kind = "switch"
	NodeTransform    Kind = "transform"
	NodeDelay        Kind = "delay"
	NodeApproval     Kind = "approval"
	NodeLoop         Kind = "loop"
	NodeCallWorkflow Kind = "call-workflow"
	NodeAgent        Kind = "agent"
	NodeAIGenerate   Kind = "ai-generate"
	NodeAIExtract    Kind = "ai-extract"
	NodeFilter       Kind = "filter"
	NodeSort         Kind = "sort"
	NodeCode         Kind = "code"
	NodeStopError    Kind = "stop-error"
	NodeRespond      Kind = "respond-webhook"
	NodeParallel     Kind = "parallel"
	NodeMerge        Kind = "merge"
)

// IsTrigger reports whether k is a trigger kind.
func (k Kind) IsTrigger() bool {
	switch k {
	case TriggerManual, TriggerWebhook, TriggerSchedule, TriggerApp, TriggerError:
		return true
	}
	return false
}

// IsNode reports whether k is a step kind.
func (k Kind) IsNode() bool {
	switch k {
	case NodeAction, NodeHTTP, NodeBranch, NodeSwitch, NodeTransform, NodeDelay, NodeApproval, NodeLoop, NodeCallWorkflow, NodeAgent, NodeAIGenerate, NodeAIExtract,
		NodeFilter, NodeSort, NodeCode, NodeStopError, NodeRespond, NodeParallel, NodeMerge:
		return true
	}
	return false
}

// Label is the kind's name for people.
func (k Kind) Label() string {
	switch k {
	case TriggerManual:
		return "Manual trigger"
	case TriggerWebhook:
		return "Webhook trigger"
	case TriggerSchedule:
		return "Schedule trigger"
	case TriggerApp:
		return "App trigger"
	case TriggerError:
		return "Error trigger"
	case NodeAction:
		return "App action"
	case NodeHTTP:
		return "HTTP Request"
	case NodeBranch:
		return "Branch"
	case NodeSwitch:
		return "Switch"
	case NodeTransform:
		return "Transform"
	case NodeDelay:
		return "Delay"
	case NodeApproval:
		return "Approval"
	case NodeLoop:
		return "Loop"
	case NodeCallWorkflow:
		return "Call Workflow"
	case NodeAgent:
		return "Agent"
	case NodeAIGenerate:
		return "AI Generate"
	case NodeAIExtract:
		return "AI Extract"
	case NodeFilter:
		return "Filter"
	case NodeSort:
		return "Sort"
	case NodeCode:
		return "Code"
	case NodeStopError:
		return "Stop and Error"
	case NodeRespond:
		return "Respond to Webhook"
	case NodeParallel:
		return "Parallel"
	case NodeMerge:
		return "Merge"
	}
	return string(k)
}

// ParseGraph reads a graph document, rejecting unknown fields so a typo is
// an error rather than a silently ignored setting.
func ParseGraph(raw []byte) (Graph, error) {
	var g Graph
	dec := json.NewDecoder(bytesReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return Graph{}, fmt.Errorf("the workflow document is not valid: %w", err)
	}
	if dec.More() {
		return Graph{}, fmt.Errorf("the workflow document must be a single JSON object")
	}
	return g, nil
}

// Predecessors lists the nodes with an edge into id, once each, in edge
// order.
func (g Graph) Predecessors(id string) []string {
	var out []string
	for _, e := range g.Edges {
		if e.To == id && !slices.Contains(out, e.From) {
			out = append(out, e.From)
		}
	}
	return out
}

// Reaches reports whether to can be reached from from along edges (from
// itself excluded unless a path comes back to it).
func (g Graph) Reaches(from, to string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range g.Edges {
			if e.From != id || seen[e.To] {
				continue
			}
			if e.To == to {
				return true
			}
			seen[e.To] = true
			stack = append(stack, e.To)
		}
	}
	return false
}

// LoopBody lists the steps a Loop runs once per item: what its "each" path
// reaches before meeting what its "done" path reaches.
func (g Graph) LoopBody(loopID string) map[string]bool {
	reach := func(starts []string, stop map[string]bool) map[string]bool {
		seen := map[string]bool{}
		var mark func(id string)
		mark = func(id string) {
			if seen[id] || stop[id] {
				return
			}
			seen[id] = true
			for _, e := range g.Edges {
				if e.From == id {
					mark(e.To)
				}
			}
		}
		for _, s := range starts {
			mark(s)
		}
		return seen
	}
	return reach(g.Successors(loopID, "each"), reach(g.Successors(loopID, "done"), nil))
}
