// Package api is the JSON API under /api/v1: one route table, small
// handlers, one error shape ({"error": {"code", "message"}}), and an OpenAPI
// document kept in step with the table by a test.
package api

import (
	_ "embed"
	"log/slog"
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/authn"
)

//go:embed openapi.json
var openAPIDoc []byte

// Handler serves the JSON API.
type Handler struct {
	accounts *account.Service
	auth     *authn.Authenticator
	log      *slog.Logger
}

// New returns the API handler.
func New(accounts *account.Service, auth *authn.Authenticator, log *slog.Logger) *Handler {
	return &Handler{accounts: accounts, auth: auth, log: log}
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
		{"GET", "/api/v1/account", h.authed(h.getAccount)},
		{"PATCH", "/api/v1/account", h.authed(h.patchAccount)},
		{"POST", "/api/v1/account/transfer-ownership", h.authed(h.transferOwnership)},
		{"GET", "/api/v1/account/staff", h.authed(h.listStaff)},
		{"GET", "/api/v1/workspaces", h.authed(h.listWorkspaces)},
		{"POST", "/api/v1/workspaces", h.authed(h.createWorkspace)},
		{"GET", "/api/v1/workspaces/slug-availability", h.authed(h.slugAvailability)},
		{"GET", "/api/v1/workspaces/{slug}", h.authed(h.getWorkspace)},
		{"GET", "/api/v1/workspaces/{slug}/members", h.authed(h.listMembers)},
		{"GET", "/api/v1/api-tokens", h.authed(h.listTokens)},
		{"POST", "/api/v1/api-tokens", h.authed(h.createToken)},
		{"DELETE", "/api/v1/api-tokens/{id}", h.authed(h.revokeToken)},
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
