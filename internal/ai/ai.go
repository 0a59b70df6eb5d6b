// Package ai makes the model calls of runs: each call is priced before it
// is sent, reserved against the workspace's spend cap at its worst case,
// sent to the workspace's own provider, and settled at what it cost.
package ai

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/llm"
	"taskjuice/internal/spend"
	"taskjuice/internal/workflow"
)

// Gateway calls models under spend caps.
type Gateway struct {
	models  *llm.Service
	spend   *spend.Service
	catalog *catalog.Catalog
}

// New returns a gateway over the workspaces' providers and caps; the
// catalog describes app actions as tools.
func New(models *llm.Service, caps *spend.Service, cat *catalog.Catalog) *Gateway {
	return &Gateway{models: models, spend: caps, catalog: cat}
}

// ToolSchema describes an app action as a model tool: its description and
// a JSON Schema object of its inputs.
func (g *Gateway) ToolSchema(appKey, actionKey string) (string, json.RawMessage, bool) {
	app, ok := g.catalog.App(appKey)
	if !ok {
		return "", nil, false
	}
	act, ok := app.Action(actionKey)
	if !ok {
		return "", nil, false
	}
	props := map[string]any{}
	required := []string{}
	for _, in := range act.Inputs {
		p := map[string]any{"description": strings.TrimSpace(in.Label + ". " + in.Help)}
		switch in.Type {
		case catalog.FieldNumber:
			p["type"] = "number"
		case catalog.FieldBoolean:
			p["type"] = "boolean"
		case catalog.FieldJSON:
		default:
			p["type"] = "string"
		}
		if in.Pattern != "" {
			p["pattern"] = in.Pattern
		}
		props[in.Name] = p
		if in.Required {
			required = append(required, in.Name)
		}
	}
	raw, _ := json.Marshal(map[string]any{"type": "object", "properties": props, "required": required})
	desc := act.Description
	if desc == "" {
		desc = act.Name
	}
	return app.Name + ": " + desc, raw, true
}

// Call sends req to the model m of the workspace's provider. ref names the
// call for the cap (a step attempt); a call refused by the cap is never
// sent and returns an error matching spend.ErrCapReached.
func (g *Gateway) Call(ctx context.Context, workspaceID, ref string, m workflow.ModelRef, req llm.Request, call spend.Call) (llm.Response, error) {
	client, err := g.models.Client(ctx, workspaceID, m.ProviderID)
	if apperr.IsNotFound(err) {
		return llm.Response{}, apperr.NotFound("The step's model provider no longer exists in this workspace")
	}
	if err != nil {
		return llm.Response{}, err
	}
	req.Model = m.Name
	plan, err := client.Plan(req)
	if err != nil {
		return llm.Response{}, err
	}
	call.ProviderID, call.Model = m.ProviderID, m.Name
	res, err := g.spend.Reserve(ctx, workspaceID, ref, plan.WorstCase, call)
	if err != nil {
		return llm.Response{}, err
	}
	if res.Settled() {
		// This attempt's call was made and paid for, but its answer was
		// lost before the step recorded it (the process died): the call is
		// made again, and counted again, as it truly costs twice.
		if res, err = g.spend.Reserve(ctx, workspaceID, ref+"/again", plan.WorstCase, call); err != nil {
			return llm.Response{}, err
		}
	}
	resp, err := client.Complete(ctx, req)
	if err != nil {
		if rerr := g.spend.Release(context.WithoutCancel(ctx), res); rerr != nil {
			return llm.Response{}, errors.Join(err, rerr)
		}
		return llm.Response{}, err
	}
	if err := g.spend.Settle(context.WithoutCancel(ctx), res, resp.Cost, resp.Usage); err != nil {
		return llm.Response{}, err
	}
	return resp, nil
}
