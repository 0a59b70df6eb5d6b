package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/workflow"
)

// Sample is the data one node of a workflow is built against: the
// trigger's pasted sample ("pasted") or, when none was pasted, the event of
// the workflow's last run ("event"); a step's last test ("test").
type Sample struct {
	NodeID string          `json:"nodeId"`
	Source string          `json:"source"`
	Data   json.RawMessage `json:"data"`
	// Input is what a tested step was given: its settings, evaluated.
	Input      json.RawMessage `json:"input,omitempty"`
	Error      *StepError      `json:"error,omitempty"`
	DurationMS int64           `json:"durationMs"`
}

// SaveSample records a node's sample, replacing the one before.
func (e *Engine) SaveSample(ctx context.Context, workflowID string, s Sample) error {
	errText := ""
	if s.Error != nil {
		b, _ := json.Marshal(s.Error)
		errText = string(b)
	}
	_, err := e.db.Write().ExecContext(ctx, `INSERT INTO step_samples (workflow_id, node_id, source, data, error, duration_ms, updated_at, input)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (workflow_id, node_id) DO UPDATE SET source = excluded.source, data = excluded.data,
			error = excluded.error, duration_ms = excluded.duration_ms, updated_at = excluded.updated_at, input = excluded.input`,
		workflowID, s.NodeID, s.Source, string(nonEmpty(s.Data)), errText, s.DurationMS, e.now(), string(s.Input))
	return err
}

// TriggerSampleID names the node a workflow's trigger sample is kept
// under.
func TriggerSampleID(g workflow.Graph) string {
	if g.Trigger == nil || g.Trigger.ID == "" {
		return "trigger"
	}
	return g.Trigger.ID
}

// TriggerSample is where a workflow's trigger sample is kept (ID) and what
// stands in for it while none was pasted and no run has come: its app
// trigger's example.
type TriggerSample struct {
	ID      string
	Example json.RawMessage
}

// TriggerSampleOf reads g's trigger sample's place, and its app trigger's
// example from cat.
func TriggerSampleOf(g workflow.Graph, cat *catalog.Catalog) TriggerSample {
	t := TriggerSample{ID: TriggerSampleID(g)}
	if g.Trigger == nil || g.Trigger.Kind != workflow.TriggerApp || cat == nil {
		return t
	}
	var cfg workflow.AppTriggerConfig
	if json.Unmarshal(g.Trigger.Config, &cfg) != nil {
		return t
	}
	if app, ok := cat.App(cfg.App); ok {
		if tr, ok := app.Trigger(cfg.Trigger); ok {
			t.Example = tr.Example
		}
	}
	return t
}

// Samples reads a workflow's samples by node id. With no sample pasted
// for the trigger, the event of the workflow's last run is the trigger's
// sample ("event"), else its app trigger's example ("example").
func (e *Engine) Samples(ctx context.Context, workflowID string, trigger TriggerSample) (map[string]Sample, error) {
	out, err := e.storedSamples(ctx, workflowID)
	if err != nil || trigger.ID == "" {
		return out, err
	}
	if _, ok := out[trigger.ID]; ok {
		return out, nil
	}
	var payload string
	err = e.db.Read().QueryRowContext(ctx, `SELECT trigger_payload FROM runs WHERE workflow_id = $1 ORDER BY created_at DESC LIMIT 1`, workflowID).Scan(&payload)
	switch {
	case err == nil:
		out[trigger.ID] = Sample{NodeID: trigger.ID, Source: "event", Data: json.RawMessage(nonEmpty(json.RawMessage(payload)))}
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
	case len(trigger.Example) > 0:
		out[trigger.ID] = Sample{NodeID: trigger.ID, Source: "example", Data: trigger.Example}
	}
	return out, nil
}

func (e *Engine) storedSamples(ctx context.Context, workflowID string) (map[string]Sample, error) {
	rows, err := e.db.Read().QueryContext(ctx, `SELECT node_id, source, data, error, duration_ms, input FROM step_samples WHERE workflow_id = $1`, workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Sample{}
	for rows.Next() {
		var s Sample
		var data, errText, input string
		if err := rows.Scan(&s.NodeID, &s.Source, &data, &errText, &s.DurationMS, &input); err != nil {
			return nil, err
		}
		s.Data = json.RawMessage(data)
		if input != "" {
			s.Input = json.RawMessage(input)
		}
		if errText != "" {
			s.Error = &StepError{}
			_ = json.Unmarshal([]byte(errText), s.Error)
		}
		out[s.NodeID] = s
	}
	return out, rows.Err()
}

// MsgRunNotOfWorkflow refuses an earlier run of another workflow as the
// data a step is tested with.
const MsgRunNotOfWorkflow = "That run is not one of this workflow's; choose one of its own runs"

// RunData is an earlier run's data as samples: its trigger payload and
// the output of each step it completed (the last attempt; a loop's steps
// by their last iteration), for testing a step against a real run.
func (e *Engine) RunData(ctx context.Context, workspaceID, workflowID, runID string) (json.RawMessage, map[string]json.RawMessage, error) {
	run, err := e.Get(ctx, workspaceID, runID)
	if err != nil {
		return nil, nil, err
	}
	if run.WorkflowID != workflowID {
		return nil, nil, apperr.Invalid("runId", MsgRunNotOfWorkflow)
	}
	steps, err := e.Steps(ctx, workspaceID, runID)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]json.RawMessage{}
	for _, s := range steps {
		if s.Status == StepCompleted && len(s.Output) > 0 {
			out[EntryNode(s.NodeID)] = s.Output
		}
	}
	return run.TriggerPayload, out, nil
}
