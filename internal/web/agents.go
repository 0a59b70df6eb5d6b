package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"taskjuice/internal/agent"
	"taskjuice/internal/apperr"
	"taskjuice/internal/workflow"
)

// Agents: a list with a form to create one, and each agent's page with its
// settings and a form to start a run by hand.

type agentsData struct {
	Agents  []agent.Agent
	Choices agentChoices
	Form    agentForm
	Error   string
	Fields  map[string]string
}

// agentChoices are what the form offers: the workspace's models and the
// app actions reachable through its active connections.
type agentChoices struct {
	Models []choice
	Tools  []choice
}

type choice struct{ Value, Label string }

// agentForm is the form as typed, to show it again after a refusal.
type agentForm struct {
	Name, Instructions, Model string
	MaxSteps                  int
	Tools                     []string
}

const agentToolRows = 4

// modelChoices are the workspace's models as a form offers them: the value
// "providerId|model", the label "Provider · model".
func (h *Handler) modelChoices(ctx context.Context, workspaceID string) ([]choice, error) {
	if h.Models == nil {
		return nil, nil
	}
	ps, err := h.Models.List(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	var out []choice
	for _, p := range ps {
		for _, m := range p.Models {
			out = append(out, choice{Value: modelValue(workflow.ModelRef{ProviderID: p.ID, Name: m.Model}), Label: p.Name + " · " + m.Model})
		}
	}
	return out, nil
}

func (h *Handler) agentChoices(r *http.Request, v view) (agentChoices, error) {
	models, err := h.modelChoices(r.Context(), v.Workspace.ID)
	if err != nil {
		return agentChoices{}, err
	}
	c := agentChoices{Models: models}
	conns, err := h.Connections.List(r.Context(), *v.Workspace, "active")
	if err != nil {
		return c, err
	}
	for _, cn := range conns {
		app, ok := h.Catalog.App(cn.AppKey)
		if !ok {
			continue
		}
		for _, a := range app.Actions {
			c.Tools = append(c.Tools, choice{Value: cn.ID + "|" + cn.AppKey + "|" + a.Key, Label: app.Name + " · " + cn.Label + " — " + a.Name})
		}
	}
	return c, nil
}

func (h *Handler) agents(w http.ResponseWriter, r *http.Request, v view) {
	h.renderAgents(w, r, v, http.StatusOK, agentsData{Form: agentForm{Tools: make([]string, agentToolRows)}})
}

func (h *Handler) renderAgents(w http.ResponseWriter, r *http.Request, v view, status int, d agentsData) {
	list, err := h.Agents.List(r.Context(), *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	if d.Choices, err = h.agentChoices(r, v); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Agents = list
	v.Title, v.Data = "Agents · "+v.Workspace.Name, d
	h.render(w, r, status, "agents", v)
}

// agentSpec reads the create form.
func agentSpec(r *http.Request) (agent.Spec, agentForm, error) {
	f := agentForm{Name: r.PostForm.Get("name"), Instructions: r.PostForm.Get("instructions"), Model: r.PostForm.Get("model"), Tools: r.PostForm["tool"]}
	sp := agent.Spec{Name: f.Name, Instructions: f.Instructions}
	if s := strings.TrimSpace(r.PostForm.Get("maxSteps")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return sp, f, apperr.Invalid("maxSteps", "Steps must be a whole number")
		}
		f.MaxSteps, sp.MaxSteps = n, n
	}
	if f.Model != "" {
		if !strings.Contains(f.Model, "|") {
			return sp, f, apperr.Invalid("model", "Choose a model from the list")
		}
		m := modelRef(f.Model)
		sp.Model = &m
	}
	for len(f.Tools) < agentToolRows {
		f.Tools = append(f.Tools, "")
	}
	for _, t := range f.Tools {
		if t == "" {
			continue
		}
		parts := strings.Split(t, "|")
		if len(parts) != 3 {
			return sp, f, apperr.Invalid("tools", "Choose tools from the list")
		}
		name := parts[2]
		for i := 2; toolNamed(sp.Tools, name); i++ {
			name = parts[2] + "-" + strconv.Itoa(i)
		}
		sp.Tools = append(sp.Tools, workflow.AgentTool{Name: name, ConnectionID: parts[0], App: parts[1], Action: parts[2]})
	}
	return sp, f, nil
}

func toolNamed(tools []workflow.AgentTool, name string) bool {
	for _, t := range tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

func (h *Handler) createAgent(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	sp, form, err := agentSpec(r)
	if err == nil {
		var a agent.Agent
		if a, err = h.Agents.Create(r.Context(), *v.Workspace, sp, v.P.User.ID); err == nil {
			setFlash(w, "agent-created")
			redirect(w, r, "/"+v.Workspace.Slug+"/agents/"+a.ID)
			return
		}
	}
	e, ok := apperr.As(err)
	if !ok {
		h.errorPage(w, r, v.P, err)
		return
	}
	h.renderAgents(w, r, v, apperr.Status(err), agentsData{Form: form, Error: e.Message, Fields: apperr.Fields(err)})
}

type agentData struct {
	Agent      agent.Agent
	ModelLabel string
	Input      string
	Error      string
}

func (h *Handler) agentPage(w http.ResponseWriter, r *http.Request, v view) {
	d := agentData{Input: "{}"}
	if k, ok := keptForm(r); ok {
		d = agentData{Input: k.Values["input"], Error: k.Error}
	}
	h.renderAgent(w, r, v, http.StatusOK, d)
}

func (h *Handler) renderAgent(w http.ResponseWriter, r *http.Request, v view, status int, d agentData) {
	a, err := h.Agents.Get(r.Context(), *v.Workspace, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Agent = a
	if a.Model != nil {
		d.ModelLabel = a.Model.Name
		if h.Models != nil {
			if p, err := h.Models.Get(r.Context(), v.Workspace.ID, a.Model.ProviderID); err == nil {
				d.ModelLabel = p.Name + " · " + a.Model.Name
			}
		}
	}
	v.Title, v.Data = a.Name+" · Agents", d
	h.render(w, r, status, "agent", v)
}

// runAgent starts an agent run by hand with the typed input.
func (h *Handler) runAgent(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	a, err := h.Agents.Get(r.Context(), *v.Workspace, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	input := strings.TrimSpace(r.PostForm.Get("input"))
	if input == "" {
		input = "{}"
	}
	if !json.Valid([]byte(input)) {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/agents/"+a.ID, apperr.Invalid("input", "The input must be JSON, e.g. {\"lead\": \"Ada\"}"), map[string]string{"input": input})
		return
	}
	id, err := h.Engine.StartRun(r.Context(), a.ID, json.RawMessage(input), "manual", "")
	if err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/agents/"+a.ID, err, map[string]string{"input": input})
		return
	}
	setFlash(w, "run-started")
	redirect(w, r, "/"+v.Workspace.Slug+"/monitoring/workflow-runs/"+a.ID+"/"+id)
}
