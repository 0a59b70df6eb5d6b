package workflow

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/db"
	"taskjuice/internal/textcheck"
)

// Service is the workflow domain.
type Service struct {
	db        *db.DB
	now       func() time.Time
	liveHooks []func(ctx context.Context, l Live, ok bool)
}

// NewService returns the workflow service.
func NewService(d *db.DB) *Service { return &Service{db: d, now: db.Now} }

// StarterGraph is a new workflow's first draft: a manual trigger and
// nothing yet after it.
func StarterGraph() Graph {
	return Graph{Schema: SchemaVersion, Trigger: &Node{ID: "trigger", Kind: TriggerManual}, Nodes: []Node{}, Edges: []Edge{}}
}

// ValidName trims a workflow's or an agent's name and checks it: 1–100
// characters on one line.
func ValidName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 {
		return "", apperr.Invalid("name", "Name must be 1–100 characters")
	}
	if err := textcheck.Line("name", "A name", name); err != nil {
		return "", err
	}
	return name, nil
}

// Create makes a workflow with a first draft (v1).
func (s *Service) Create(ctx context.Context, ws account.Workspace, name, description string, g *Graph, actor string) (Workflow, error) {
	return s.create(ctx, ws, TypeWorkflow, name, description, g, actor)
}

// CreateAgent makes an agent: a workflow of type agent, whose graph is a
// trigger and one Agent step.
func (s *Service) CreateAgent(ctx context.Context, ws account.Workspace, name, description string, g Graph, actor string) (Workflow, error) {
	return s.create(ctx, ws, TypeAgent, name, description, &g, actor)
}

func (s *Service) create(ctx context.Context, ws account.Workspace, typ, name, description string, g *Graph, actor string) (Workflow, error) {
	name, err := ValidName(name)
	if err != nil {
		return Workflow{}, err
	}
	if utf8.RuneCountInString(description) > 2000 {
		return Workflow{}, apperr.Invalid("description", "Description must be at most 2000 characters")
	}
	if !textcheck.Storable(description) {
		return Workflow{}, apperr.Invalid("description", "The description holds a NUL character or bytes that are not valid UTF-8")
	}
	graph := StarterGraph()
	if g != nil {
		graph = *g
	}
	raw, err := json.Marshal(graph)
	if err != nil {
		return Workflow{}, fmt.Errorf("encode graph: %w", err)
	}
	now := s.now()
	w := Workflow{ID: db.NewID(), WorkspaceID: ws.ID, Type: typ, Name: name, Description: strings.TrimSpace(description), CreatedAt: now, UpdatedAt: now}
	w.setStatus("", false)
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO workflows (id, workspace_id, type, name, description, next_version, created_by, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 2, $6, $7, $7)`, w.ID, w.WorkspaceID, typ, w.Name, w.Description, db.NullString(actor), now); err != nil {
			return fmt.Errorf("insert workflow: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO workflow_versions (id, workflow_id, number, state, graph, created_by, created_at)
			VALUES ($1, $2, 1, 'draft', $3, $4, $5)`, db.NewID(), w.ID, string(raw), db.NullString(actor), now)
		if err != nil {
			return fmt.Errorf("insert first draft: %w", err)
		}
		return nil
	})
	return w, err
}

func (w *Workflow) setStatus(operator string, active bool) {
	switch {
	case operator != "":
		w.Status = Status(operator)
	case active:
		w.Status = StatusPublished
	default:
		w.Status = StatusDraft
	}
	w.StatusLabel, w.StatusText = w.Status.Label(), w.Status.Description()
}

const workflowCols = `id, workspace_id, type, name, description, operator_state, COALESCE(active_version_id, ''), auto_resume_reauth, max_runs_per_minute, COALESCE(error_workflow_id, ''), created_at, updated_at`

func scanWorkflow(row interface{ Scan(...any) error }) (Workflow, error) {
	var w Workflow
	var op string
	if err := row.Scan(&w.ID, &w.WorkspaceID, &w.Type, &w.Name, &w.Description, &op, &w.ActiveVersionID, &w.AutoResumeReauth, &w.MaxRunsPerMinute, &w.ErrorWorkflowID, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return Workflow{}, err
	}
	w.setStatus(op, w.ActiveVersionID != "")
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return w, nil
}

// Get returns a workflow of the workspace.
func (s *Service) Get(ctx context.Context, ws account.Workspace, id string) (Workflow, error) {
	return s.get(ctx, s.db.Read(), ws.ID, id)
}

func (s *Service) get(ctx context.Context, q db.Querier, workspaceID, id string) (Workflow, error) {
	w, err := scanWorkflow(q.QueryRowContext(ctx, `SELECT `+workflowCols+` FROM workflows WHERE workspace_id = $1 AND id = $2`, workspaceID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Workflow{}, apperr.ErrNotFound
	}
	if err != nil {
		return Workflow{}, fmt.Errorf("read workflow: %w", err)
	}
	return w, nil
}

// List returns the workspace's workflows by name (not its agents).
func (s *Service) List(ctx context.Context, ws account.Workspace) ([]Workflow, error) {
	return s.list(ctx, ws, TypeWorkflow)
}

// ListAgents returns the workspace's agents by name.
func (s *Service) ListAgents(ctx context.Context, ws account.Workspace) ([]Workflow, error) {
	return s.list(ctx, ws, TypeAgent)
}

func (s *Service) list(ctx context.Context, ws account.Workspace, typ string) ([]Workflow, error) {
	rows, err := s.db.Read().QueryContext(ctx, `SELECT `+workflowCols+` FROM workflows WHERE workspace_id = $1 AND type = $2 ORDER BY name, id`, ws.ID, typ)
	if err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	defer rows.Close()
	var out []Workflow
	for rows.Next() {
		w, err := scanWorkflow(rows)
		if err != nil {
			return nil, fmt.Errorf("scan workflow: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

const versionCols = `id, workflow_id, number, state, graph, COALESCE(based_on, 0), created_at, published_at`

func scanVersion(row interface{ Scan(...any) error }) (Version, error) {
	var v Version
	var state, graph string
	var published sql.NullTime
	if err := row.Scan(&v.ID, &v.WorkflowID, &v.Number, &state, &graph, &v.BasedOn, &v.CreatedAt, &published); err != nil {
		return Version{}, err
	}
	v.State = VersionState(state)
	if err := json.Unmarshal([]byte(graph), &v.Graph); err != nil {
		return Version{}, fmt.Errorf("decode graph of version %d: %w", v.Number, err)
	}
	v.CreatedAt = v.CreatedAt.UTC()
	if published.Valid {
		t := published.Time.UTC()
		v.PublishedAt = &t
	}
	return v, nil
}

// Versions lists a workflow's versions, newest first.
func (s *Service) Versions(ctx context.Context, ws account.Workspace, workflowID string) ([]Version, error) {
	if _, err := s.Get(ctx, ws, workflowID); err != nil {
		return nil, err
	}
	rows, err := s.db.Read().QueryContext(ctx, `SELECT `+versionCols+` FROM workflow_versions WHERE workflow_id = $1 ORDER BY number DESC`, workflowID)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Version returns one version of the workflow.
func (s *Service) Version(ctx context.Context, ws account.Workspace, workflowID, versionID string) (Version, error) {
	if _, err := s.Get(ctx, ws, workflowID); err != nil {
		return Version{}, err
	}
	v, err := scanVersion(s.db.Read().QueryRowContext(ctx, `SELECT `+versionCols+` FROM workflow_versions WHERE workflow_id = $1 AND id = $2`, workflowID, versionID))
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, apperr.ErrNotFound
	}
	return v, err
}

// Draft returns the workflow's draft, creating "Draft from vN" from the
// active version when there is none: editing never touches the version
// that is dispatching.
func (s *Service) Draft(ctx context.Context, ws account.Workspace, workflowID, actor string) (Version, error) {
	var out Version
	err := s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := s.get(ctx, tx, ws.ID, workflowID); err != nil {
			return err
		}
		v, err := scanVersion(tx.QueryRowContext(ctx, `SELECT `+versionCols+` FROM workflow_versions WHERE workflow_id = $1 AND state = 'draft'`, workflowID))
		if err == nil {
			out = v
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read draft: %w", err)
		}
		// Base the draft on the active version, else on the newest one.
		src, err := scanVersion(tx.QueryRowContext(ctx, `SELECT `+versionCols+` FROM workflow_versions WHERE workflow_id = $1
			ORDER BY CASE WHEN state = 'active' THEN 0 ELSE 1 END, number DESC LIMIT 1`, workflowID))
		if err != nil {
			return fmt.Errorf("read version to draft from: %w", err)
		}
		var number int
		if err := tx.QueryRowContext(ctx, `UPDATE workflows SET next_version = next_version + 1, updated_at = $1 WHERE id = $2 RETURNING next_version - 1`,
			s.now(), workflowID).Scan(&number); err != nil {
			return fmt.Errorf("number draft: %w", err)
		}
		raw, _ := json.Marshal(src.Graph)
		out = Version{ID: db.NewID(), WorkflowID: workflowID, Number: number, State: VersionDraft, Graph: src.Graph, BasedOn: src.Number, CreatedAt: s.now()}
		_, err = tx.ExecContext(ctx, `INSERT INTO workflow_versions (id, workflow_id, number, state, graph, based_on, created_by, created_at)
			VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7)`, out.ID, workflowID, number, string(raw), src.Number, db.NullString(actor), out.CreatedAt)
		if err != nil {
			return fmt.Errorf("create draft: %w", err)
		}
		return nil
	})
	return out, err
}

// SaveDraft replaces the draft's graph (creating the draft first if needed).
// Any graph that parses may be saved; problems are reported at publish.
func (s *Service) SaveDraft(ctx context.Context, ws account.Workspace, workflowID string, g Graph, actor string) (Version, error) {
	d, err := s.Draft(ctx, ws, workflowID, actor)
	if err != nil {
		return Version{}, err
	}
	raw, err := json.Marshal(g)
	if err != nil {
		return Version{}, fmt.Errorf("encode graph: %w", err)
	}
	if len(raw) > MaxGraphBytes {
		return Version{}, apperr.Invalid("graph", fmt.Sprintf("A workflow document is at most %d KiB", MaxGraphBytes>>10))
	}
	if _, err := s.db.Write().ExecContext(ctx, `UPDATE workflow_versions SET graph = $1 WHERE id = $2 AND state = 'draft'`, string(raw), d.ID); err != nil {
		return Version{}, fmt.Errorf("save draft: %w", err)
	}
	d.Graph = g
	return d, nil
}

// MaxGraphBytes bounds a stored graph document.
const MaxGraphBytes = 1 << 20

// CompileError is a failed publish: the toast "Workflow compilation failed"
// and every problem, for the editor to show next to its node.
type CompileError struct {
	Problems []Problem
}

func (e *CompileError) Error() string { return MsgCompilationFailed }

// Publish validates the version (the draft, when versionID is empty) with
// every check and makes it the active version; the previous active version
// becomes inactive. Runs already in flight keep the version they started on.
func (s *Service) Publish(ctx context.Context, ws account.Workspace, workflowID, versionID string, c Checks) (Version, error) {
	var v Version
	var err error
	if versionID == "" {
		v, err = scanVersion(s.db.Read().QueryRowContext(ctx, `SELECT `+versionCols+` FROM workflow_versions v
			WHERE v.workflow_id = $1 AND v.state = 'draft' AND EXISTS (SELECT 1 FROM workflows w WHERE w.id = v.workflow_id AND w.workspace_id = $2)`, workflowID, ws.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return Version{}, apperr.Conflict("no_draft", "", "There is no draft to publish; edit the workflow first")
		}
	} else {
		v, err = s.Version(ctx, ws, workflowID, versionID)
	}
	if err != nil {
		return Version{}, err
	}
	if v.State == VersionActive {
		return v, nil
	}
	if problems := Validate(v.Graph, c); len(problems) > 0 {
		return Version{}, &CompileError{Problems: problems}
	}
	now := s.now()
	err = s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := tx.ExecContext(ctx, `UPDATE workflow_versions SET state = 'inactive' WHERE workflow_id = $1 AND state = 'active'`, workflowID); err != nil {
			return fmt.Errorf("retire active version: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE workflow_versions SET state = 'active', published_at = COALESCE(published_at, $1)
			WHERE id = $2 AND state = $3`, now, v.ID, string(v.State))
		if err != nil {
			return fmt.Errorf("activate version: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return apperr.Conflict("version_changed", "", "This version changed while publishing; try again")
		}
		_, err = tx.ExecContext(ctx, `UPDATE workflows SET active_version_id = $1, updated_at = $2 WHERE id = $3`, v.ID, now, workflowID)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, ws.ID, workflowID, account.AuditWorkflowPublished, fmt.Sprintf("version %d", v.Number))
	})
	if err != nil {
		return Version{}, err
	}
	v.State = VersionActive
	if v.PublishedAt == nil {
		v.PublishedAt = &now
	}
	s.liveChanged(ctx, workflowID)
	return v, nil
}

// Deactivate stops the active version; with none active the workflow is a
// Draft again.
func (s *Service) Deactivate(ctx context.Context, ws account.Workspace, workflowID string) error {
	defer s.liveChanged(ctx, workflowID)
	return s.db.InTx(ctx, func(tx db.Querier) error {
		if _, err := s.get(ctx, tx, ws.ID, workflowID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE workflow_versions SET state = 'inactive' WHERE workflow_id = $1 AND state = 'active'`, workflowID)
		if err != nil {
			return fmt.Errorf("deactivate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE workflows SET active_version_id = NULL, updated_at = $1 WHERE id = $2`, s.now(), workflowID); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // nothing was live
		}
		return s.audit(ctx, tx, ws.ID, workflowID, account.AuditWorkflowDeactivated, "")
	})
}

// audit records a person's change of a workflow in the account's audit
// log, within tx, naming the workflow.
func (s *Service) audit(ctx context.Context, tx db.Querier, workspaceID, workflowID, action, detail string) error {
	if account.ActorOf(ctx) == "" {
		return nil
	}
	var name string
	if err := tx.QueryRowContext(ctx, `SELECT name FROM workflows WHERE id = $1`, workflowID).Scan(&name); err != nil {
		return fmt.Errorf("read workflow for the audit log: %w", err)
	}
	return account.AuditByActor(ctx, tx, s.now(), workspaceID, action, name+" ("+workflowID+")", detail)
}

// Export is a workflow as a portable document: its name, description and
// the graph of its draft (or active version).
type Export struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Graph       Graph  `json:"graph"`
}

// Export returns the workflow's current graph (the draft if there is one,
// else the active version) as a document.
func (s *Service) Export(ctx context.Context, ws account.Workspace, workflowID string) (Export, error) {
	w, err := s.Get(ctx, ws, workflowID)
	if err != nil {
		return Export{}, err
	}
	v, err := scanVersion(s.db.Read().QueryRowContext(ctx, `SELECT `+versionCols+` FROM workflow_versions WHERE workflow_id = $1
		ORDER BY CASE state WHEN 'draft' THEN 0 WHEN 'active' THEN 1 ELSE 2 END, number DESC LIMIT 1`, workflowID))
	if err != nil {
		return Export{}, fmt.Errorf("read version to export: %w", err)
	}
	return Export{Name: w.Name, Description: w.Description, Graph: v.Graph}, nil
}

// Import creates a workflow from an exported document, as a draft.
func (s *Service) Import(ctx context.Context, ws account.Workspace, raw []byte, actor string) (Workflow, error) {
	var e Export
	dec := json.NewDecoder(bytesReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Workflow{}, apperr.BadRequest("invalid_document", "The file is not a TaskJuice workflow: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	if e.Graph.Schema != SchemaVersion {
		return Workflow{}, apperr.BadRequest("invalid_document", fmt.Sprintf("The workflow document has version %d; this TaskJuice reads version %d", e.Graph.Schema, SchemaVersion))
	}
	return s.Create(ctx, ws, e.Name, e.Description, &e.Graph, actor)
}

// Live is what the engine needs of a workflow to start a run: its
// workspace, status, active version and graph.
type Live struct {
	// MaxRunsPerMinute trips the throughput breaker (0: no limit).
	MaxRunsPerMinute int
	WorkflowID       string
	WorkspaceID      string
	// Type is TypeWorkflow or TypeAgent.
	Type             string
	Status           Status
	VersionID        string
	Graph            Graph
	AutoResumeReauth bool
}

// Live returns the workflow's active version, for server code (the engine,
// triggers); ok is false when no version is active.
func (s *Service) Live(ctx context.Context, workflowID string) (Live, bool, error) {
	var l Live
	var op, graph string
	var versionID sql.NullString
	err := s.db.Read().QueryRowContext(ctx, `SELECT w.id, w.workspace_id, w.type, w.operator_state, w.active_version_id, COALESCE(v.graph, ''),
		w.auto_resume_reauth, w.max_runs_per_minute
		FROM workflows w LEFT JOIN workflow_versions v ON v.id = w.active_version_id WHERE w.id = $1`, workflowID).
		Scan(&l.WorkflowID, &l.WorkspaceID, &l.Type, &op, &versionID, &graph, &l.AutoResumeReauth, &l.MaxRunsPerMinute)
	if errors.Is(err, sql.ErrNoRows) {
		return Live{}, false, apperr.ErrNotFound
	}
	if err != nil {
		return Live{}, false, fmt.Errorf("read live workflow: %w", err)
	}
	var w Workflow
	w.setStatus(op, versionID.Valid)
	l.Status = w.Status
	if !versionID.Valid {
		return l, false, nil
	}
	l.VersionID = versionID.String
	if err := json.Unmarshal([]byte(graph), &l.Graph); err != nil {
		return Live{}, false, fmt.Errorf("decode active graph: %w", err)
	}
	return l, true, nil
}

// GraphOf returns the graph of a version by id, for server code (a run
// executes the version it started on).
func (s *Service) GraphOf(ctx context.Context, versionID string) (Graph, error) {
	var graph string
	err := s.db.Read().QueryRowContext(ctx, `SELECT graph FROM workflow_versions WHERE id = $1`, versionID).Scan(&graph)
	if errors.Is(err, sql.ErrNoRows) {
		return Graph{}, apperr.ErrNotFound
	}
	if err != nil {
		return Graph{}, fmt.Errorf("read version graph: %w", err)
	}
	var g Graph
	if err := json.Unmarshal([]byte(graph), &g); err != nil {
		return Graph{}, fmt.Errorf("decode graph: %w", err)
	}
	return g, nil
}

// Successors lists the nodes reached from id along path ("" for the main
// path of any node; Branch, Switch and Loop nodes name theirs).
func (g Graph) Successors(id, path string) []string {
	var out []string
	for _, e := range g.Edges {
		if e.From == id && e.When == path {
			out = append(out, e.To)
		}
	}
	return out
}

// Node returns the node (or trigger) with id.
func (g Graph) Node(id string) (Node, bool) {
	if g.Trigger != nil && g.Trigger.ID == id {
		return *g.Trigger, true
	}
	for _, n := range g.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return Node{}, false
}

// Uses reports whether the graph uses the connection: bound to its trigger
// or a step, or behind one of an agent's tools.
func (g Graph) Uses(connectionID string) bool {
	if g.Trigger != nil && g.Trigger.Connection != nil && g.Trigger.Connection.ID == connectionID {
		return true
	}
	for _, n := range g.Nodes {
		if n.Connection != nil && n.Connection.ID == connectionID {
			return true
		}
		if n.Kind == NodeAgent {
			if cfg, err := DecodeConfig(n); err == nil {
				for _, t := range cfg.(*AgentConfig).Tools {
					if t.ConnectionID == connectionID {
						return true
					}
				}
			}
		}
	}
	return false
}

// CheckThroughputLimit refuses a run limit SetThroughputLimit would refuse.
func CheckThroughputLimit(perMinute int) error {
	if perMinute < 0 || perMinute > 100000 {
		return apperr.Invalid("maxRunsPerMinute", "The limit must be 0 (none) to 100000 runs per minute")
	}
	return nil
}

// SetThroughputLimit sets the runs a workflow may start per minute before
// the safety breaker pauses it (0: no limit).
func (s *Service) SetThroughputLimit(ctx context.Context, ws account.Workspace, workflowID string, perMinute int) error {
	if err := CheckThroughputLimit(perMinute); err != nil {
		return err
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE workflows SET max_runs_per_minute = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4`,
		perMinute, s.now(), ws.ID, workflowID)
	if err != nil {
		return fmt.Errorf("set throughput limit: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.ErrNotFound
	}
	return nil
}

// Messages of a refused error workflow.
const (
	MsgErrorWorkflowNotFound = "Choose one of this workspace's workflows as the error workflow"
	MsgErrorWorkflowSelf     = "A workflow cannot be its own error workflow"
	MsgErrorWorkflowTrigger  = "The error workflow must start with the Error trigger"
)

// SetErrorWorkflow names the workflow started for each failed run of this
// one ("" for none). It must be another workflow of the workspace whose
// newest version starts with the Error trigger.
func (s *Service) SetErrorWorkflow(ctx context.Context, ws account.Workspace, workflowID, errorWorkflowID string) error {
	if _, err := s.Get(ctx, ws, workflowID); err != nil {
		return err
	}
	if errorWorkflowID != "" {
		if errorWorkflowID == workflowID {
			return apperr.Invalid("errorWorkflowId", MsgErrorWorkflowSelf)
		}
		if _, err := s.Get(ctx, ws, errorWorkflowID); apperr.IsNotFound(err) {
			return apperr.Invalid("errorWorkflowId", MsgErrorWorkflowNotFound)
		} else if err != nil {
			return err
		}
		var graph string
		err := s.db.Read().QueryRowContext(ctx, `SELECT graph FROM workflow_versions WHERE workflow_id = $1 ORDER BY number DESC LIMIT 1`, errorWorkflowID).Scan(&graph)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read error workflow: %w", err)
		}
		g, perr := ParseGraph([]byte(graph))
		if err != nil || perr != nil || g.Trigger == nil || g.Trigger.Kind != TriggerError {
			return apperr.Invalid("errorWorkflowId", MsgErrorWorkflowTrigger)
		}
	}
	_, err := s.db.Write().ExecContext(ctx, `UPDATE workflows SET error_workflow_id = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4`,
		db.NullString(errorWorkflowID), s.now(), ws.ID, workflowID)
	if err != nil {
		return fmt.Errorf("set error workflow: %w", err)
	}
	return nil
}

// TripBreaker pauses a workflow for safety (server code: the engine's
// throughput breaker). It reports whether this call tripped it.
func (s *Service) TripBreaker(ctx context.Context, workflowID string) (bool, error) {
	res, err := s.db.Write().ExecContext(ctx, `UPDATE workflows SET operator_state = 'paused-safety', updated_at = $1 WHERE id = $2 AND operator_state = ''`,
		s.now(), workflowID)
	if err != nil {
		return false, fmt.Errorf("trip breaker: %w", err)
	}
	n, _ := res.RowsAffected()
	if n == 1 {
		s.liveChanged(ctx, workflowID)
	}
	return n == 1, nil
}

// SetAutoResume sets "Resume held runs automatically after reconnect".
func (s *Service) SetAutoResume(ctx context.Context, ws account.Workspace, workflowID string, on bool) error {
	res, err := s.db.Write().ExecContext(ctx, `UPDATE workflows SET auto_resume_reauth = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4`,
		on, s.now(), ws.ID, workflowID)
	if err != nil {
		return fmt.Errorf("set auto-resume: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.ErrNotFound
	}
	return nil
}

// ActiveTrigger returns the kind and config of the live version's trigger;
// ok is false when the workflow is not published.
func (s *Service) ActiveTrigger(ctx context.Context, workflowID string) (string, json.RawMessage, bool, error) {
	l, ok, err := s.Live(ctx, workflowID)
	if apperr.IsNotFound(err) {
		return "", nil, false, nil
	}
	if err != nil || !ok || !l.Status.Dispatching() || l.Graph.Trigger == nil {
		return "", nil, false, err
	}
	return string(l.Graph.Trigger.Kind), l.Graph.Trigger.Config, true, nil
}

// OnLiveChange registers a function called after a workflow's live version
// changed (published, activated or deactivated), with what is live now (ok
// false: nothing). Triggers that run on their own (schedules) follow it.
// Register before serving; the list is not guarded.
func (s *Service) OnLiveChange(fn func(ctx context.Context, l Live, ok bool)) {
	s.liveHooks = append(s.liveHooks, fn)
}

func (s *Service) liveChanged(ctx context.Context, workflowID string) {
	if len(s.liveHooks) == 0 {
		return
	}
	l, ok, err := s.Live(ctx, workflowID)
	if err != nil {
		return
	}
	for _, fn := range s.liveHooks {
		fn(ctx, l, ok)
	}
}

// SetOperatorState archives, disables or (with "") restores a workflow, or
// clears a safety pause. An archived, disabled or paused workflow starts
// no runs; runs in flight are not touched.
func (s *Service) SetOperatorState(ctx context.Context, ws account.Workspace, workflowID string, state Status) error {
	var op string
	switch state {
	case StatusArchived, StatusDisabled, StatusPausedSafety:
		op = string(state)
	case "", StatusDraft, StatusPublished:
		op = ""
	default:
		return apperr.Invalid("status", "Status must be archived, disabled or paused-safety, or empty to restore")
	}
	res, err := s.db.Write().ExecContext(ctx, `UPDATE workflows SET operator_state = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4`,
		op, s.now(), ws.ID, workflowID)
	if err != nil {
		return fmt.Errorf("set workflow state: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.ErrNotFound
	}
	s.liveChanged(ctx, workflowID)
	return nil
}
