// Package teardown takes data out of the product: a workspace's deletion
// (its connections revoked at their apps, its triggers stopped, then
// everything removed), the account's export as a JSON archive without
// secrets, and the account's deletion by its owner.
package teardown

import (
	"context"
	"log/slog"
	"net/http"

	"taskjuice/internal/account"
	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// Service deletes and exports; every part it uses is the product's own
// service for that data.
type Service struct {
	Accounts    *account.Service
	Connections *connection.Service
	Catalog     *catalog.Catalog
	Workflows   *workflow.Service
	// CallbackURL is the OAuth redirect URL (the client configuration a
	// revocation is made with); Client calls the apps (nil: the default).
	CallbackURL string
	Client      *http.Client
	Log         *slog.Logger
}

// Revocation is how revoking one connection at its app went.
type Revocation struct {
	ConnectionID string `json:"connectionId"`
	Label        string `json:"label"`
	App          string `json:"app"`
	// Outcome is the app's answer in words ("revoked at the app", "not
	// attempted: the app has no revocation endpoint", ...).
	Outcome string `json:"outcome"`
}

// Report says what a deletion removed.
type Report struct {
	Contents    account.WorkspaceContents `json:"removed"`
	Revocations []Revocation              `json:"revocations"`
}

// DeleteWorkspace deletes ws once confirm is its address: its live
// workflows are deactivated (so schedules, polls and app subscriptions
// stop), every connection not yet revoked is revoked at its app, then the
// workspace goes with everything in it. A refusal (not an admin, a wrong
// confirmation) changes nothing.
func (s *Service) DeleteWorkspace(ctx context.Context, p account.Principal, ws account.Workspace, confirm string) (Report, error) {
	c, err := s.Accounts.Contents(ctx, p, ws)
	if err != nil {
		return Report{}, err
	}
	if err := account.ConfirmWorkspace(ws, confirm); err != nil {
		return Report{}, err
	}
	rep := Report{Contents: c}
	if err := s.stopWorkflows(ctx, ws); err != nil {
		return rep, err
	}
	if rep.Revocations, err = s.revokeAll(ctx, p, ws); err != nil {
		return rep, err
	}
	return rep, s.Accounts.DeleteWorkspace(ctx, p, ws, confirm, c)
}

// stopWorkflows deactivates the workspace's live workflows and agents.
func (s *Service) stopWorkflows(ctx context.Context, ws account.Workspace) error {
	wfs, err := s.Workflows.List(ctx, ws)
	if err != nil {
		return err
	}
	for _, wf := range wfs {
		if wf.ActiveVersionID == "" {
			continue
		}
		if err := s.Workflows.Deactivate(ctx, ws, wf.ID); err != nil {
			return err
		}
	}
	return nil
}

// revokeAll revokes every connection of ws that is not revoked yet, at
// its app where the app has a revocation endpoint.
func (s *Service) revokeAll(ctx context.Context, p account.Principal, ws account.Workspace) ([]Revocation, error) {
	conns, err := s.Connections.List(ctx, ws, "")
	if err != nil {
		return nil, err
	}
	out := []Revocation{}
	actor := connection.Actor{Kind: connection.ActorUser, UserID: p.User.ID}
	for _, c := range conns {
		if c.Status == connection.StatusRevoked {
			continue
		}
		app, _ := s.Catalog.App(c.AppKey)
		cfg, revokeURL := connection.Revocation(app, s.CallbackURL)
		_, outcome, err := s.Connections.RevokeReporting(ctx, ws, c.ID, actor, cfg, revokeURL, s.Client)
		if err != nil {
			return out, err
		}
		if outcome == "" {
			outcome = "revoked here; the app has no revocation endpoint"
		}
		out = append(out, Revocation{ConnectionID: c.ID, Label: c.Label, App: c.AppKey, Outcome: outcome})
	}
	return out, nil
}

// DeleteAccount deletes the owner's account once confirm is its name:
// every workspace's triggers are stopped and connections revoked at their
// apps first, then the account goes with its people and data.
func (s *Service) DeleteAccount(ctx context.Context, p account.Principal, confirm string) ([]Revocation, error) {
	if err := account.MayDeleteAccount(p); err != nil {
		return nil, err
	}
	a, err := s.Accounts.Account(ctx, p.AccountID)
	if err != nil {
		return nil, err
	}
	if err := account.ConfirmAccount(a, confirm); err != nil {
		return nil, err
	}
	wss, err := s.Accounts.Workspaces(ctx, p)
	if err != nil {
		return nil, err
	}
	var all []Revocation
	for _, ws := range wss {
		if err := s.stopWorkflows(ctx, ws); err != nil {
			return all, err
		}
		revs, err := s.revokeAll(ctx, p, ws)
		all = append(all, revs...)
		if err != nil {
			return all, err
		}
	}
	if err := s.Accounts.DeleteAccount(ctx, p, confirm); err != nil {
		return all, err
	}
	if s.Log != nil {
		s.Log.InfoContext(ctx, "account deleted by its owner", "account", p.AccountID, "workspaces", len(wss), "connections_revoked", len(all))
	}
	return all, nil
}
