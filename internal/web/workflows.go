package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"taskjuice/internal/apperr"
	"taskjuice/internal/workflow"
)

type workflowsData struct {
	Workflows   []workflow.Workflow
	Name        string
	Description string
	Error       string
	ImportError string
}

func (h *Handler) workflows(w http.ResponseWriter, r *http.Request, v view) {
	h.renderWorkflows(w, r, v, http.StatusOK, workflowsData{})
}

func (h *Handler) renderWorkflows(w http.ResponseWriter, r *http.Request, v view, status int, d workflowsData) {
	list, err := h.Workflows.List(r.Context(), *v.Workspace)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d.Workflows = list
	v.Title, v.Data = "Workflows · "+v.Workspace.Name, d
	h.render(w, r, status, "workflows", v)
}

func (h *Handler) createWorkflow(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	name, desc := r.PostForm.Get("name"), r.PostForm.Get("description")
	wf, err := h.Workflows.Create(r.Context(), *v.Workspace, name, desc, nil, v.P.User.ID)
	if err != nil {
		if e, ok := apperr.As(err); ok {
			h.renderWorkflows(w, r, v, apperr.Status(err), workflowsData{Name: name, Description: desc, Error: e.Message})
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "workflow-created")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+wf.ID+"/edit")
}

// importWorkflow takes an exported document (an uploaded file) and creates
// a draft workflow from it.
func (h *Handler) importWorkflow(w http.ResponseWriter, r *http.Request, v view) {
	r.Body = http.MaxBytesReader(w, r.Body, workflow.MaxGraphBytes+64<<10)
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		h.renderWorkflows(w, r, v, http.StatusBadRequest, workflowsData{ImportError: "Choose a workflow file (.json, at most 1 MiB) to import."})
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		h.renderWorkflows(w, r, v, http.StatusBadRequest, workflowsData{ImportError: "Choose a workflow file to import."})
		return
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		h.renderWorkflows(w, r, v, http.StatusBadRequest, workflowsData{ImportError: "The file could not be read."})
		return
	}
	wf, err := h.Workflows.Import(r.Context(), *v.Workspace, raw, v.P.User.ID)
	if err != nil {
		if e, ok := apperr.As(err); ok {
			h.renderWorkflows(w, r, v, apperr.Status(err), workflowsData{ImportError: e.Message})
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "workflow-imported")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+wf.ID)
}

type workflowData struct {
	Workflow workflow.Workflow
	Versions []workflow.Version
	Error    string
	// Webhook is set when the live or draft trigger is a webhook.
	Webhook *webhookData
	// Manual is true when the live trigger is manual: a "Run now" button.
	Manual bool
	// Broken are the connections the workflow uses that are not working.
	Broken []connectionRow
}

type webhookData struct {
	URL       string
	Auth      string
	HasSecret bool
}

func (h *Handler) loadWorkflow(w http.ResponseWriter, r *http.Request, v view) (workflow.Workflow, bool) {
	wf, err := h.Workflows.Get(r.Context(), *v.Workspace, r.PathValue("id"))
	if err != nil {
		err = apperr.Explain(err, "There is no such workflow in this workspace.")
		h.errorPage(w, r, v.P, err)
		return workflow.Workflow{}, false
	}
	return wf, true
}

func (h *Handler) workflowDetail(w http.ResponseWriter, r *http.Request, v view) {
	h.renderWorkflow(w, r, v, http.StatusOK, "")
}

func (h *Handler) renderWorkflow(w http.ResponseWriter, r *http.Request, v view, status int, msg string) {
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	versions, err := h.Workflows.Versions(r.Context(), *v.Workspace, wf.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := workflowData{Workflow: wf, Versions: versions, Error: msg}
	if len(versions) > 0 {
		// The newest version's trigger (the draft's, or the live one's).
		if t := versions[0].Graph.Trigger; t != nil {
			switch t.Kind {
			case workflow.TriggerWebhook:
				if d.Webhook, err = h.webhookInfo(r, wf.ID, t); err != nil {
					h.errorPage(w, r, v.P, err)
					return
				}
			case workflow.TriggerManual:
				d.Manual = wf.Status == workflow.StatusPublished
			}
		}
		conns, err := h.Connections.List(r.Context(), *v.Workspace, "")
		if err != nil {
			h.errorPage(w, r, v.P, err)
			return
		}
		for _, c := range conns {
			if (c.Status == "error" || c.Status == "revoked") && versions[0].Graph.Uses(c.ID) {
				d.Broken = append(d.Broken, connectionRow{Connection: c, AppName: h.appName(c.AppKey)})
			}
		}
	}
	v.Title, v.Data = wf.Name+" · Workflows", d
	h.render(w, r, status, "workflow", v)
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// exportWorkflow downloads the workflow as a JSON document that Import
// reads back.
func (h *Handler) exportWorkflow(w http.ResponseWriter, r *http.Request, v view) {
	exp, err := h.Workflows.Export(r.Context(), *v.Workspace, r.PathValue("id"))
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	body, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	name := strings.Trim(unsafeFileChars.ReplaceAllString(strings.ToLower(exp.Name), "-"), "-")
	if name == "" {
		name = "workflow"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.taskjuice.json"`)
	_, _ = w.Write(append(body, '\n'))
}

func (h *Handler) deactivateWorkflow(w http.ResponseWriter, r *http.Request, v view) {
	if err := h.Workflows.Deactivate(r.Context(), *v.Workspace, r.PathValue("id")); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "deactivated")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+r.PathValue("id"))
}

// activateVersion makes an earlier version (or the draft) the active one,
// through the same publish gate.
func (h *Handler) activateVersion(w http.ResponseWriter, r *http.Request, v view) {
	_, err := h.Workflows.Publish(r.Context(), *v.Workspace, r.PathValue("id"), r.PathValue("version"), h.workflowChecks(r.Context(), *v.Workspace, r.PathValue("id")))
	var ce *workflow.CompileError
	switch {
	case errors.As(err, &ce):
		var lines []string
		for _, p := range ce.Problems {
			lines = append(lines, p.String())
		}
		h.renderWorkflow(w, r, v, http.StatusUnprocessableEntity, workflow.MsgCompilationFailed+": "+strings.Join(lines, "; "))
		return
	case err != nil:
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "version-activated")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+r.PathValue("id"))
}

func (h *Handler) workflowSettings(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	if err := h.Workflows.SetAutoResume(r.Context(), *v.Workspace, r.PathValue("id"), r.PostForm.Get("autoResume") == "on"); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	limit := 0
	if s := strings.TrimSpace(r.PostForm.Get("maxRunsPerMinute")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			h.renderWorkflow(w, r, v, http.StatusUnprocessableEntity, "The run limit must be a whole number (0 for none).")
			return
		}
		limit = n
	}
	if err := h.Workflows.SetThroughputLimit(r.Context(), *v.Workspace, r.PathValue("id"), limit); err != nil {
		if e, ok := apperr.As(err); ok {
			h.renderWorkflow(w, r, v, apperr.Status(err), e.Message)
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "settings-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+r.PathValue("id"))
}

func (h *Handler) webhookInfo(r *http.Request, workflowID string, t *workflow.Node) (*webhookData, error) {
	token, err := h.Webhooks.Endpoint(r.Context(), workflowID)
	if err != nil {
		return nil, err
	}
	has, err := h.Webhooks.HasSecret(r.Context(), workflowID)
	if err != nil {
		return nil, err
	}
	d := &webhookData{URL: h.BaseURL + "/webhooks/" + token, HasSecret: has, Auth: "none"}
	if cfg, err := workflow.DecodeConfig(*t); err == nil {
		if wc := cfg.(*workflow.WebhookConfig); wc.Auth != "" {
			d.Auth = wc.Auth
		}
	}
	return d, nil
}

func (h *Handler) regenerateWebhook(w http.ResponseWriter, r *http.Request, v view) {
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	if _, err := h.Webhooks.Regenerate(r.Context(), wf.ID); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "webhook-rotated")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+wf.ID)
}

// setWebhookSecret stores the shared secret of the bearer, header and HMAC
// modes. It is sealed, and never shown again.
func (h *Handler) setWebhookSecret(w http.ResponseWriter, r *http.Request, v view) {
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	if err := h.Webhooks.SetSecret(r.Context(), wf.ID, r.PostForm.Get("secret")); err != nil {
		if e, ok := apperr.As(err); ok {
			h.renderWorkflow(w, r, v, apperr.Status(err), e.Message)
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "secret-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+wf.ID)
}

// runWorkflow is the manual trigger's button; the optional payload is JSON.
func (h *Handler) runWorkflow(w http.ResponseWriter, r *http.Request, v view) {
	wf, ok := h.loadWorkflow(w, r, v)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	payload := strings.TrimSpace(r.PostForm.Get("payload"))
	if payload != "" && !json.Valid([]byte(payload)) {
		h.renderWorkflow(w, r, v, http.StatusUnprocessableEntity, "The payload must be JSON, for example {\"name\": \"Ada\"}.")
		return
	}
	if _, err := h.Engine.StartRun(r.Context(), wf.ID, json.RawMessage(payload), "manual", ""); err != nil {
		if e, ok := apperr.As(err); ok {
			h.renderWorkflow(w, r, v, apperr.Status(err), e.Message)
			return
		}
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "run-started")
	redirect(w, r, "/"+v.Workspace.Slug+"/monitoring/workflow-runs")
}

// workflowState archives, disables, restores or clears a safety pause.
func (h *Handler) workflowState(w http.ResponseWriter, r *http.Request, v view) {
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	if err := h.Workflows.SetOperatorState(r.Context(), *v.Workspace, r.PathValue("id"), workflow.Status(r.PostForm.Get("state"))); err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	setFlash(w, "state-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/workflows/"+r.PathValue("id"))
}
