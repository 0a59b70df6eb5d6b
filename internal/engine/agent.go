package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/llm"
	"taskjuice/internal/workflow"
)

// An Agent step is a loop of turns. Each turn is two durable steps: a
// decision (the next tool call, or the final answer) and, for a tool call,
// the call itself through the tool's connection. Their frontier entries
// (and step rows) are "agent" for the first decision, "agent!k" for the
// k-th, and "agent!k.tool" for the k-th tool call, so each has its own
// attempts and idempotency keys. A tool call that finds its connection
// broken holds the run at that step; an agent run resumes by itself once
// the connection is reconnected and makes the same call again.
//
// With the callback driver an outside caller makes each decision: the run
// waits ("agent-callback") until SubmitAgentDecision hands it one.

// WaitAgentCallback is the wait reason of an agent run waiting for its
// next decision.
const WaitAgentCallback = "agent-callback"

// agentTurn is where an entry sits in an agent's loop.
type agentTurn struct {
	turn int
	tool bool
}

func parseAgentEntry(entry string) agentTurn {
	_, rest, ok := strings.Cut(entry, "!")
	if !ok {
		return agentTurn{turn: 1}
	}
	num, tool := strings.CutSuffix(rest, ".tool")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return agentTurn{turn: 1}
	}
	return agentTurn{turn: n, tool: tool}
}

func decisionEntry(node string, turn int) string {
	if turn == 1 {
		return node
	}
	return node + "!" + strconv.Itoa(turn)
}

func toolEntry(node string, turn int) string { return node + "!" + strconv.Itoa(turn) + ".tool" }

// AgentDecision is one turn's decision: a tool call, or the final answer.
type AgentDecision struct {
	ToolCall *ToolCall `json:"toolCall,omitempty"`
	Answer   any       `json:"answer,omitempty"`
	// A model's decision also records the model's id for the tool call and
	// what the call used and cost.
	CallID string     `json:"callId,omitempty"`
	Usage  *llm.Usage `json:"usage,omitempty"`
	Cost   string     `json:"costUsd,omitempty"`
}

// ToolCall names one of the agent's tools and its input.
type ToolCall struct {
	Tool  string                     `json:"tool"`
	Input map[string]json.RawMessage `json:"input,omitempty"`
}

// check validates a decision against the agent's tools.
func (d AgentDecision) check(cfg workflow.AgentConfig) error {
	switch {
	case d.ToolCall == nil && d.Answer == nil:
		return apperr.Invalid("toolCall", "Send either a toolCall or an answer")
	case d.ToolCall != nil && d.Answer != nil:
		return apperr.Invalid("toolCall", "Send a toolCall or an answer, not both")
	case d.ToolCall != nil:
		if _, ok := cfg.Tool(d.ToolCall.Tool); !ok {
			names := make([]string, len(cfg.Tools))
			for i, t := range cfg.Tools {
				names[i] = t.Name
			}
			return apperr.Invalid("toolCall.tool", fmt.Sprintf("The agent has no tool %q; its tools are: %s", d.ToolCall.Tool, strings.Join(names, ", ")))
		}
	}
	return nil
}

func agentConfig(raw json.RawMessage) (workflow.AgentConfig, error) {
	var cfg workflow.AgentConfig
	if err := json.Unmarshal(nonEmpty(raw), &cfg); err != nil {
		return cfg, &StepError{Code: "CONFIG_INVALID", Message: "The agent's settings could not be read: " + err.Error()}
	}
	return cfg, nil
}

// agent runs one entry of an Agent step: a decision or a tool call.
func (e *Engine) agent(ctx context.Context, c Call) (Outcome, error) {
	cfg, err := agentConfig(c.Config)
	if err != nil {
		return Outcome{}, err
	}
	t := parseAgentEntry(c.Entry)
	if t.tool {
		return e.agentTool(ctx, c, cfg, t.turn)
	}
	if t.turn > cfg.Steps() {
		return Outcome{}, &StepError{Code: "AGENT_STEP_LIMIT", Message: fmt.Sprintf("The agent took all of its %d steps without giving an answer", cfg.Steps())}
	}
	switch cfg.Driver {
	case workflow.DriverModel:
		return e.modelDecision(ctx, c, cfg, t.turn)
	case workflow.DriverCallback:
		fmt.Fprintf(c.Console, "turn %d: waiting for the next decision from the agent callback\n", t.turn)
		return Outcome{Output: map[string]any{"turn": t.turn, "awaiting": "decision"}, WaitFor: WaitAgentCallback}, nil
	}
	return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("Unknown agent driver %q", cfg.Driver)}
}

// agentTool makes the tool call the turn's decision asked for, as an app
// action through the tool's connection.
func (e *Engine) agentTool(ctx context.Context, c Call, cfg workflow.AgentConfig, turn int) (Outcome, error) {
	d, ok, err := e.decisionOf(ctx, c.Run.ID, c.Node.ID, turn)
	if err != nil {
		return Outcome{}, err
	}
	if !ok || d.ToolCall == nil {
		return Outcome{}, &StepError{Code: "AGENT_NO_DECISION", Message: fmt.Sprintf("Turn %d has no tool call to make", turn)}
	}
	tool, ok := cfg.Tool(d.ToolCall.Tool)
	if !ok {
		return Outcome{}, &StepError{Code: "AGENT_UNKNOWN_TOOL", Message: fmt.Sprintf("The agent has no tool %q", d.ToolCall.Tool)}
	}
	exec, ok := e.exec[workflow.NodeAction]
	if !ok {
		return Outcome{}, &StepError{Code: "NOT_SUPPORTED", Message: "This TaskJuice cannot run app actions"}
	}
	raw, _ := json.Marshal(workflow.ActionConfig{App: tool.App, Action: tool.Action, Inputs: d.ToolCall.Input})
	fmt.Fprintf(c.Console, "turn %d: tool %s\n", turn, tool.Name)
	return exec(ctx, Call{
		Run: c.Run, Entry: c.Entry, Config: raw, Input: c.Input, IdempotencyKey: c.IdempotencyKey, Console: c.Console, Attempt: c.Attempt, Now: c.Now,
		Node: workflow.Node{ID: c.Node.ID, Kind: workflow.NodeAction, Connection: &workflow.Binding{ID: tool.ConnectionID}},
	})
}

// agentNext is the frontier entry after an agent entry completed: the tool
// call a decision asked for, the next decision after a tool call, or
// nothing more (the step is done) after the answer.
func agentNext(node workflow.Node, entry string, out Outcome) (next string, done bool, err error) {
	t := parseAgentEntry(entry)
	if t.tool {
		return decisionEntry(node.ID, t.turn+1), false, nil
	}
	raw, err := json.Marshal(out.Output)
	if err != nil {
		return "", false, err
	}
	var d AgentDecision
	if err := json.Unmarshal(raw, &d); err != nil || (d.ToolCall == nil && d.Answer == nil) {
		return "", false, &StepError{Code: "AGENT_NO_DECISION", Message: fmt.Sprintf("Turn %d ended without a tool call or an answer", t.turn)}
	}
	if d.ToolCall != nil {
		return toolEntry(node.ID, t.turn), false, nil
	}
	return "", true, nil
}

// MsgNotWaitingForAgent refuses a decision for a run that is not waiting
// for one.
const MsgNotWaitingForAgent = "This run is not waiting for an agent decision"

// SubmitAgentDecision hands an agent run waiting on its callback the next
// decision and sets it going again.
func (e *Engine) SubmitAgentDecision(ctx context.Context, workspaceID, runID, actor string, d AgentDecision) error {
	err := e.act(ctx, workspaceID, runID, "agent-decision", actor, func(tx db.Querier, st state) error {
		if st.Status != StatusWaiting || st.WaitReason != WaitAgentCallback || len(st.frontier) == 0 {
			return apperr.Conflict("not_waiting_for_agent", "", MsgNotWaitingForAgent)
		}
		g, err := e.workflows.GraphOf(ctx, st.VersionID)
		if err != nil {
			return err
		}
		node, ok := g.Node(EntryNode(st.frontier[0]))
		if !ok || node.Kind != workflow.NodeAgent {
			return apperr.Conflict("not_waiting_for_agent", "", MsgNotWaitingForAgent)
		}
		cfg, err := agentConfig(node.Config)
		if err != nil {
			return err
		}
		if cfg.Driver != workflow.DriverCallback {
			return apperr.Conflict("not_waiting_for_agent", "", "This agent is driven by a model; it takes no decisions from callers")
		}
		d.CallID, d.Usage, d.Cost = "", nil, ""
		if err := d.check(cfg); err != nil {
			return err
		}
		out, err := json.Marshal(d)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE run_steps SET output = $1 WHERE run_id = $2 AND node_id = $3 AND status = 'waiting'`,
			string(out), runID, st.frontier[0])
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return apperr.Conflict("not_waiting_for_agent", "", MsgNotWaitingForAgent)
		}
		_, err = tx.ExecContext(ctx, `UPDATE runs SET due_at = $1, updated_at = $1 WHERE id = $2`, e.now(), runID)
		return err
	})
	if err == nil {
		e.notify(ctx)
	}
	return err
}
