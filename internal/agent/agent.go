// Package agent manages agents: each has instructions, the tools it may
// use (app actions, each through a connection of the workspace) and a step
// limit. An agent is stored as a workflow of type agent whose graph is a
// manual trigger and one Agent step; every change publishes a new version,
// and each agent run keeps the version it started on. The engine runs the
// agent's loop (see engine/agent.go).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/expr"
	"taskjuice/internal/llm"
	"taskjuice/internal/workflow"
)

// Spec is what a person sets on an agent.
type Spec struct {
	Name         string               `json:"name"`
	Description  string               `json:"description"`
	Instructions string               `json:"instructions"`
	Tools        []workflow.AgentTool `json:"tools"`
	MaxSteps     int                  `json:"maxSteps,omitempty"`
	// Model drives the agent; without one, an outside caller submits each
	// decision (the agent callback).
	Model     *workflow.ModelRef `json:"model,omitempty"`
	MaxTokens int                `json:"maxTokens,omitempty"`
}

// Agent is an agent as people and the API see it.
type Agent struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	Description  string               `json:"description"`
	Status       workflow.Status      `json:"status"`
	Driver       string               `json:"driver"`
	Instructions string               `json:"instructions"`
	Tools        []workflow.AgentTool `json:"tools"`
	MaxSteps     int                  `json:"maxSteps"`
	Model        *workflow.ModelRef   `json:"model,omitempty"`
	MaxTokens    int                  `json:"maxTokens,omitempty"`
	VersionID    string               `json:"versionId"`
}

// Service is the agent domain.
type Service struct {
	workflows   *workflow.Service
	connections *connection.Service
	catalog     *catalog.Catalog
	models      *llm.Service
}

// NewService returns the agent service; models (may be nil) are the
// workspaces' model providers, which drive agents.
func NewService(w *workflow.Service, c *connection.Service, cat *catalog.Catalog, models *llm.Service) *Service {
	return &Service{workflows: w, connections: c, catalog: cat, models: models}
}

// stepID is the id of the Agent step in an agent's graph.
const stepID = "agent"

func (sp Spec) graph() workflow.Graph {
	tools := sp.Tools
	if tools == nil {
		tools = []workflow.AgentTool{}
	}
	driver := workflow.DriverCallback
	if sp.Model != nil {
		driver = workflow.DriverModel
	}
	cfg, _ := json.Marshal(workflow.AgentConfig{Instructions: sp.Instructions, Driver: driver, Model: sp.Model, Tools: tools,
		MaxSteps: sp.MaxSteps, MaxTokens: sp.MaxTokens})
	return workflow.Graph{
		Schema:  workflow.SchemaVersion,
		Trigger: &workflow.Node{ID: "start", Kind: workflow.TriggerManual},
		Nodes:   []workflow.Node{{ID: stepID, Kind: workflow.NodeAgent, Name: sp.Name, Config: cfg}},
		Edges:   []workflow.Edge{{From: "start", To: stepID}},
	}
}

// checks are the publish gate's questions for the workspace: the catalog,
// the expressions and the workspace's connections.
func (s *Service) checks(ctx context.Context, ws account.Workspace) (workflow.Checks, error) {
	lookup, err := s.connections.Lookup(ctx, ws)
	if err != nil {
		return workflow.Checks{}, err
	}
	c := workflow.Checks{Apps: s.catalog, Expressions: expr.CompileJSON, Connection: lookup}
	c.Model = func(string, string) (bool, bool) { return false, false }
	if s.models != nil {
		c.Model, err = ModelCheck(ctx, s.models, ws.ID)
		if err != nil {
			return workflow.Checks{}, err
		}
	}
	return c, nil
}

// ModelCheck answers the publish gate's question about models from the
// workspace's providers.
func ModelCheck(ctx context.Context, models *llm.Service, workspaceID string) (func(providerID, model string) (bool, bool), error) {
	ps, err := models.List(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	offered := map[string]map[string]bool{}
	for _, p := range ps {
		offered[p.ID] = map[string]bool{}
		for _, m := range p.Models {
			offered[p.ID][m.Model] = true
		}
	}
	return func(providerID, model string) (bool, bool) {
		m, ok := offered[providerID]
		return m[model], ok
	}, nil
}

// validate reports every problem of the spec as field errors.
func (s *Service) validate(ctx context.Context, ws account.Workspace, g workflow.Graph) error {
	c, err := s.checks(ctx, ws)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range workflow.Validate(g, c) {
		errs = append(errs, apperr.Invalid(p.Field, p.Message))
	}
	return errors.Join(errs...)
}

// Create makes and publishes an agent. Nothing is stored when the spec has
// a problem.
func (s *Service) Create(ctx context.Context, ws account.Workspace, sp Spec, actor string) (Agent, error) {
	g := sp.graph()
	_, nameErr := workflow.ValidName(sp.Name)
	if err := s.validate(ctx, ws, g); err != nil {
		if _, ok := apperr.As(err); ok {
			// Every problem at once, the name's too.
			err = errors.Join(nameErr, err)
		}
		return Agent{}, err
	}
	if nameErr != nil {
		return Agent{}, nameErr
	}
	w, err := s.workflows.CreateAgent(ctx, ws, sp.Name, sp.Description, g, actor)
	if err != nil {
		return Agent{}, err
	}
	if err := s.publish(ctx, ws, w.ID); err != nil {
		return Agent{}, err
	}
	return s.Get(ctx, ws, w.ID)
}

// Update publishes a new version of the agent with the spec's instructions,
// tools and limit; runs already under way keep the version they started on.
func (s *Service) Update(ctx context.Context, ws account.Workspace, id string, sp Spec, actor string) (Agent, error) {
	cur, err := s.Get(ctx, ws, id)
	if err != nil {
		return Agent{}, err
	}
	sp.Name = cur.Name
	g := sp.graph()
	if err := s.validate(ctx, ws, g); err != nil {
		return Agent{}, err
	}
	if _, err := s.workflows.SaveDraft(ctx, ws, id, g, actor); err != nil {
		return Agent{}, err
	}
	if err := s.publish(ctx, ws, id); err != nil {
		return Agent{}, err
	}
	return s.Get(ctx, ws, id)
}

func (s *Service) publish(ctx context.Context, ws account.Workspace, id string) error {
	c, err := s.checks(ctx, ws)
	if err != nil {
		return err
	}
	_, err = s.workflows.Publish(ctx, ws, id, "", c)
	var ce *workflow.CompileError
	if errors.As(err, &ce) && len(ce.Problems) > 0 {
		return apperr.Invalid(ce.Problems[0].Field, ce.Problems[0].Message)
	}
	return err
}

// Get returns an agent of the workspace with its published settings.
func (s *Service) Get(ctx context.Context, ws account.Workspace, id string) (Agent, error) {
	w, err := s.workflows.Get(ctx, ws, id)
	if err != nil {
		return Agent{}, apperr.Explain(err, "No such agent in this workspace")
	}
	if w.Type != workflow.TypeAgent {
		return Agent{}, apperr.NotFound("No such agent in this workspace")
	}
	return s.describe(ctx, ws, w)
}

// List returns the workspace's agents by name.
func (s *Service) List(ctx context.Context, ws account.Workspace) ([]Agent, error) {
	ws2, err := s.workflows.ListAgents(ctx, ws)
	if err != nil {
		return nil, err
	}
	out := make([]Agent, 0, len(ws2))
	for _, w := range ws2 {
		a, err := s.describe(ctx, ws, w)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (s *Service) describe(ctx context.Context, ws account.Workspace, w workflow.Workflow) (Agent, error) {
	a := Agent{ID: w.ID, Name: w.Name, Description: w.Description, Status: w.Status, VersionID: w.ActiveVersionID, Tools: []workflow.AgentTool{}}
	if w.ActiveVersionID == "" {
		return a, nil
	}
	g, err := s.workflows.GraphOf(ctx, w.ActiveVersionID)
	if err != nil {
		return Agent{}, err
	}
	n, ok := g.Node(stepID)
	if !ok {
		return Agent{}, fmt.Errorf("agent %s: version %s has no agent step", w.ID, w.ActiveVersionID)
	}
	cfg, err := workflow.DecodeConfig(n)
	if err != nil {
		return Agent{}, fmt.Errorf("agent %s: %w", w.ID, err)
	}
	c := cfg.(*workflow.AgentConfig)
	a.Driver, a.Instructions, a.MaxSteps, a.Model, a.MaxTokens = c.Driver, c.Instructions, c.Steps(), c.Model, c.MaxTokens
	if c.Tools != nil {
		a.Tools = c.Tools
	}
	return a, nil
}
