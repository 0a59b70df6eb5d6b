// Package api is the JSON API under /api/v1: one route table, small
// handlers, one error shape ({"error": {"code", "message"}}), and an OpenAPI
// document kept in step with the table by a test.
package api

import (
	_ "embed"
	"log/slog"
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/agent"
	"taskjuice/internal/authn"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/engine"
	"taskjuice/internal/gate"
	"taskjuice/internal/llm"
	"taskjuice/internal/notify"
	"taskjuice/internal/portal"
	"taskjuice/internal/spend"
	"taskjuice/internal/teardown"
	"taskjuice/internal/workflow"
)

//go:embed openapi.json
var openAPIDoc []byte

// Handler serves the JSON API.
type Handler struct {
	accounts    *account.Service
	auth        *authn.Authenticator
	log         *slog.Logger
	connections *connection.Service
	refresher   *connection.Refresher
	catalog     *catalog.Catalog
	workflows   *workflow.Service
	engine      *engine.Engine
	gate        gate.Deps
	agents      *agent.Service
	models      *llm.Service
	spend       *spend.Service
	triggers    TriggerStates
	instants    InstantTriggerStates
	alerts      *notify.Service
	chatTargets notify.ChatTargets
	portal      *portal.Service
	emailOn     func() bool
	baseURL     string
	teardown    *teardown.Service
}

// Deps are the domain services the API uses.
type Deps struct {
	Accounts    *account.Service
	Auth        *authn.Authenticator
	Log         *slog.Logger
	Connections *connection.Service
	Refresher   *connection.Refresher
	Catalog     *catalog.Catalog
	Workflows   *workflow.Service
	Engine      *engine.Engine
	Agents      *agent.Service
	// Portal tells where client-provided steps stand, for the publish
	// gate (nil: every such step reads as not connected).
	Portal *portal.Service
	Models *llm.Service   // the workspaces' model providers
	Spend  *spend.Service // model spend and its cap
	// Triggers reads where app triggers stand (nil: none are polled).
	Triggers TriggerStates
	// Instants reads where instant app triggers stand (nil: none).
	Instants InstantTriggerStates
	BaseURL  string
	// Alerts keeps the failure alert settings and incidents; ChatTargets
	// tells which connections can post them.
	Alerts      *notify.Service
	ChatTargets notify.ChatTargets
	// EmailOn tells whether the server sends email (nil: it does not);
	// without it a client request is sent by a link returned once.
	EmailOn func() bool
	// Teardown deletes workspaces and the account, and exports its data.
	Teardown *teardown.Service
}

// New returns the API handler.
func New(d Deps) *Handler {
	return &Handler{accounts: d.Accounts, auth: d.Auth, log: d.Log, connections: d.Connections,
		refresher: d.Refresher, catalog: d.Catalog, workflows: d.Workflows, engine: d.Engine, agents: d.Agents,
		models: d.Models, spend: d.Spend, triggers: d.Triggers, instants: d.Instants, baseURL: d.BaseURL,
		alerts: d.Alerts, chatTargets: d.ChatTargets, portal: d.Portal, emailOn: d.EmailOn, teardown: d.Teardown,
		gate: gate.Deps{Catalog: d.Catalog, Connections: d.Connections, Workflows: d.Workflows, Models: d.Models, Portal: d.Portal}}
}

// Route is one entry of the route table.
type Route struct {
	Method, Path string
	handler      http.HandlerFunc
}

// Routes is the route table of the API.
func (h *Handler) Routes() []Route {
	return []Route{
		{"GET", "/api/v1/openapi.json", h.openAPI},
		{"GET", "/api/v1/me", h.authed(h.me)},
		{"GET", "/api/v1/me/sessions", h.authed(h.listSessions)},
		{"DELETE", "/api/v1/me/sessions/{id}", h.authed(h.endSession)},
		{"GET", "/api/v1/account", h.authed(h.getAccount)},
		{"PATCH", "/api/v1/account", h.authed(h.patchAccount)},
		{"DELETE", "/api/v1/account", h.authed(h.deleteAccount)},
		{"GET", "/api/v1/account/export", h.authed(h.exportAccount)},
		{"POST", "/api/v1/account/transfer-ownership", h.authed(h.transferOwnership)},
		{"GET", "/api/v1/account/staff", h.authed(h.listStaff)},
		{"PATCH", "/api/v1/account/staff/{userId}", h.authed(h.changeTeammateRole)},
		{"DELETE", "/api/v1/account/staff/{userId}", h.authed(h.removeTeammate)},
		{"GET", "/api/v1/account/invitations", h.authed(h.listTeamInvitations)},
		{"GET", "/api/v1/account/audit-log", h.authed(h.listAuditLog)},
		{"POST", "/api/v1/account/invitations", h.authed(h.inviteTeammate)},
		{"POST", "/api/v1/account/invitations/{id}/resend", h.authed(h.resendTeamInvitation)},
		{"POST", "/api/v1/account/invitations/{id}/revoke", h.authed(h.revokeTeamInvitation)},
		{"GET", "/api/v1/workspaces", h.authed(h.listWorkspaces)},
		{"POST", "/api/v1/workspaces", h.authed(h.createWorkspace)},
		{"GET", "/api/v1/workspaces/slug-availability", h.authed(h.slugAvailability)},
		{"GET", "/api/v1/workspaces/{slug}", h.authed(h.getWorkspace)},
		{"PATCH", "/api/v1/workspaces/{slug}", h.authed(h.patchWorkspace)},
		{"DELETE", "/api/v1/workspaces/{slug}", h.authed(h.deleteWorkspace)},
		{"GET", "/api/v1/workspaces/{slug}/contents", h.authed(h.workspaceContents)},
		{"GET", "/api/v1/workspaces/{slug}/members", h.authed(h.listMembers)},
		{"GET", "/api/v1/api-tokens", h.authed(h.listTokens)},
		{"POST", "/api/v1/api-tokens", h.authed(h.createToken)},
		{"DELETE", "/api/v1/api-tokens/{id}", h.authed(h.revokeToken)},
		{"GET", "/api/v1/apps", h.authed(h.listApps)},
		{"GET", "/api/v1/workspaces/{slug}/connections", h.authed(h.listConnections)},
		{"POST", "/api/v1/workspaces/{slug}/connections", h.authed(h.createConnection)},
		{"GET", "/api/v1/connections/{id}", h.authed(h.getConnection)},
		{"PATCH", "/api/v1/connections/{id}", h.authed(h.patchConnection)},
		{"GET", "/api/v1/connections/{id}/history", h.authed(h.connectionHistory)},
		{"POST", "/api/v1/connections/{id}/refresh", h.authed(h.refreshConnection)},
		{"POST", "/api/v1/connections/{id}/revoke", h.authed(h.revokeConnection)},
		{"POST", "/api/v1/connections/{id}/resume-held", h.authed(h.resumeHeld)},
		{"GET", "/api/v1/workspaces/{slug}/workflows", h.authed(h.listWorkflows)},
		{"POST", "/api/v1/workspaces/{slug}/workflows", h.authed(h.createWorkflow)},
		{"POST", "/api/v1/workspaces/{slug}/workflows/import", h.authed(h.importWorkflow)},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}", h.authed(h.workflowRoute(false, h.getWorkflow))},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}/alerts", h.authed(h.workflowRoute(false, h.getWorkflowAlerts))},
		{"PUT", "/api/v1/workspaces/{slug}/workflows/{id}/alerts", h.authed(h.workflowRoute(true, h.putWorkflowAlerts))},
		{"GET", "/api/v1/workspaces/{slug}/alerts", h.authed(h.getWorkspaceAlerts)},
		{"PUT", "/api/v1/workspaces/{slug}/alerts", h.authed(h.putWorkspaceAlerts)},
		{"GET", "/api/v1/workspaces/{slug}/incidents", h.authed(h.listIncidents)},
		{"POST", "/api/v1/workspaces/{slug}/bulk-jobs", h.authed(h.startBulk)},
		{"GET", "/api/v1/workspaces/{slug}/bulk-jobs/{id}", h.authed(h.getBulk)},
		{"GET", "/api/v1/workspaces/{slug}/failures", h.authed(h.listFailures)},
		{"GET", "/api/v1/workspaces/{slug}/retention", h.authed(h.getRetention)},
		{"PUT", "/api/v1/workspaces/{slug}/retention", h.authed(h.putRetention)},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}/versions", h.authed(h.workflowRoute(false, h.listWorkflowVersions))},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}/diff", h.authed(h.workflowRoute(false, h.diffWorkflowVersions))},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}/export", h.authed(h.workflowRoute(false, h.exportWorkflow))},
		{"PUT", "/api/v1/workspaces/{slug}/workflows/{id}/draft", h.authed(h.workflowRoute(true, h.putDraft))},
		{"PATCH", "/api/v1/workspaces/{slug}/workflows/{id}/settings", h.authed(h.workflowRoute(true, h.patchWorkflowSettings))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/validate", h.authed(h.workflowRoute(false, h.validateWorkflow))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/publish", h.authed(h.workflowRoute(true, h.publishWorkflow))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/deactivate", h.authed(h.workflowRoute(true, h.deactivateWorkflow))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/archive", h.authed(h.workflowRoute(true, h.archiveWorkflow))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/steps/{nodeId}/test", h.authed(h.workflowRoute(true, h.testStep))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/preview", h.authed(h.workflowRoute(false, h.previewExpression))},
		{"GET", "/api/v1/workspaces/{slug}/workflows/{id}/samples", h.authed(h.workflowRoute(false, h.listSamples))},
		{"PUT", "/api/v1/workspaces/{slug}/workflows/{id}/trigger/sample", h.authed(h.workflowRoute(true, h.putTriggerSample))},
		{"POST", "/api/v1/workspaces/{slug}/workflows/{id}/runs", h.authed(h.startRun)},
		{"GET", "/api/v1/workflows/{id}/trigger", h.authed(h.getTrigger)},
		{"GET", "/api/v1/workflows/{id}/trigger/events", h.authed(h.listTriggerEvents)},
		{"GET", "/api/v1/workspaces/{slug}/agents", h.authed(h.listAgents)},
		{"POST", "/api/v1/workspaces/{slug}/agents", h.authed(h.createAgent)},
		{"GET", "/api/v1/workspaces/{slug}/agents/{id}", h.authed(h.getAgent)},
		{"PUT", "/api/v1/workspaces/{slug}/agents/{id}", h.authed(h.updateAgent)},
		{"POST", "/api/v1/workspaces/{slug}/agents/{id}/runs", h.authed(h.startAgentRun)},
		{"GET", "/api/v1/workspaces/{slug}/client-requests", h.authed(h.listClientRequests)},
		{"POST", "/api/v1/workspaces/{slug}/client-requests", h.authed(h.queueClientRequest)},
		{"DELETE", "/api/v1/workspaces/{slug}/client-requests/{id}", h.authed(h.unqueueClientRequest)},
		{"POST", "/api/v1/workspaces/{slug}/client-requests/send", h.authed(h.sendClientRequests)},
		{"GET", "/api/v1/workspaces/{slug}/model-providers", h.authed(h.listModelProviders)},
		{"POST", "/api/v1/workspaces/{slug}/model-providers", h.authed(h.createModelProvider)},
		{"GET", "/api/v1/workspaces/{slug}/model-providers/{id}", h.authed(h.getModelProvider)},
		{"PUT", "/api/v1/workspaces/{slug}/model-providers/{id}", h.authed(h.updateModelProvider)},
		{"DELETE", "/api/v1/workspaces/{slug}/model-providers/{id}", h.authed(h.deleteModelProvider)},
		{"GET", "/api/v1/workspaces/{slug}/spend", h.authed(h.getSpend)},
		{"PUT", "/api/v1/workspaces/{slug}/spend/cap", h.authed(h.setSpendCap)},
		{"GET", "/api/v1/workspaces/{slug}/runs", h.authed(h.listRuns)},
		{"GET", "/api/v1/runs", h.authed(h.listAllRuns)},
		{"GET", "/api/v1/workspaces/{slug}/runs/{id}", h.authed(h.getRun)},
		{"POST", "/api/v1/workspaces/{slug}/runs/{id}/{action}", h.authed(h.runAction)},
	}
}

// Register adds the API's routes to mux, plus a JSON 404 for anything else
// under /api/.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Method+" "+rt.Path, rt.handler)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, h.log, errNoRoute)
	})
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}

// OpenAPIDocument returns the embedded OpenAPI 3 document.
func OpenAPIDocument() []byte { return openAPIDoc }
