package teardown

import (
	"context"
	"fmt"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/connection"
	"taskjuice/internal/workflow"
)

// ArchiveFormat names the export's document type; ArchiveVersion its shape.
const (
	ArchiveFormat  = "taskjuice-account-export"
	ArchiveVersion = 1
)

// Archive is the account's data as one JSON document: its settings, its
// staff, each workspace's clients, connections (what they are, never
// their credentials) and workflows (as their export documents), and the
// audit log. Runs are not in it.
type Archive struct {
	Format     string               `json:"format"`
	Version    int                  `json:"version"`
	ExportedAt time.Time            `json:"exportedAt"`
	Account    account.Account      `json:"account"`
	Staff      []account.Member     `json:"staff"`
	Workspaces []WorkspaceArchive   `json:"workspaces"`
	AuditLog   []account.AuditEntry `json:"auditLog"`
}

// WorkspaceArchive is one workspace in the archive.
type WorkspaceArchive struct {
	Workspace   account.Workspace       `json:"workspace"`
	Clients     []account.User          `json:"clients"`
	Connections []connection.Connection `json:"connections"`
	Workflows   []WorkflowArchive       `json:"workflows"`
}

// WorkflowArchive is a workflow's state and its export document (which
// the workflow import reads back).
type WorkflowArchive struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Status   workflow.Status `json:"status"`
	Document workflow.Export `json:"document"`
}

// auditPage is how many audit entries are read at a time.
const auditPage = 200

// Export builds the account's archive (owners and admins) and records the
// export in the audit log.
func (s *Service) Export(ctx context.Context, p account.Principal, now time.Time) (Archive, error) {
	staff, err := s.Accounts.Staff(ctx, p)
	if err != nil {
		return Archive{}, err
	}
	audit, err := s.auditLog(ctx, p)
	if err != nil {
		return Archive{}, err
	}
	a, err := s.Accounts.Account(ctx, p.AccountID)
	if err != nil {
		return Archive{}, err
	}
	wss, err := s.Accounts.Workspaces(ctx, p)
	if err != nil {
		return Archive{}, err
	}
	out := Archive{Format: ArchiveFormat, Version: ArchiveVersion, ExportedAt: now.UTC(), Account: a, Staff: staff, AuditLog: audit,
		Workspaces: make([]WorkspaceArchive, 0, len(wss))}
	for _, ws := range wss {
		w, err := s.workspace(ctx, p, ws)
		if err != nil {
			return Archive{}, err
		}
		out.Workspaces = append(out.Workspaces, w)
	}
	detail := fmt.Sprintf("%d workspaces", len(wss))
	if err := s.Accounts.RecordExport(ctx, p, detail); err != nil {
		return Archive{}, err
	}
	return out, nil
}

func (s *Service) workspace(ctx context.Context, p account.Principal, ws account.Workspace) (WorkspaceArchive, error) {
	out := WorkspaceArchive{Workspace: ws}
	var err error
	if out.Clients, err = s.Accounts.Clients(ctx, p, ws); err != nil {
		return out, err
	}
	if out.Connections, err = s.Connections.List(ctx, ws, ""); err != nil {
		return out, err
	}
	wfs, err := s.Workflows.List(ctx, ws)
	if err != nil {
		return out, err
	}
	out.Workflows = make([]WorkflowArchive, 0, len(wfs))
	for _, wf := range wfs {
		doc, err := s.Workflows.Export(ctx, ws, wf.ID)
		if err != nil {
			return out, err
		}
		out.Workflows = append(out.Workflows, WorkflowArchive{ID: wf.ID, Type: wf.Type, Status: wf.Status, Document: doc})
	}
	return out, nil
}

// auditLog reads every entry of the account's audit log, newest first.
func (s *Service) auditLog(ctx context.Context, p account.Principal) ([]account.AuditEntry, error) {
	var all []account.AuditEntry
	f := account.AuditFilter{Limit: auditPage}
	for {
		page, err := s.Accounts.AuditLog(ctx, p, f)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < auditPage {
			return all, nil
		}
		f.Before = page[len(page)-1].ID
	}
}
