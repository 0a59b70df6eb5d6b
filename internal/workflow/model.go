package workflow

import (
	"strconv"
	"time"
)

// Status is a workflow's status.
type Status string

const (
	StatusDraft        Status = "draft"
	StatusPublished    Status = "published"
	StatusArchived     Status = "archived"
	StatusDisabled     Status = "disabled"
	StatusPausedSafety Status = "paused-safety"
)

// Label is the status's name for people.
func (s Status) Label() string {
	switch s {
	case StatusDraft:
		return "Draft"
	case StatusPublished:
		return "Published"
	case StatusArchived:
		return "Archived"
	case StatusDisabled:
		return "Disabled"
	case StatusPausedSafety:
		return "Paused (safety)"
	}
	return string(s)
}

// Description is the sentence shown with the status.
func (s Status) Description() string {
	switch s {
	case StatusDraft:
		return "No version is live yet. Nothing is dispatching."
	case StatusPublished:
		return "A version is active and dispatching live events."
	case StatusArchived:
		return "No longer dispatching; kept for reference."
	case StatusDisabled:
		return "Turned off by an operator. Nothing is dispatching."
	case StatusPausedSafety:
		return "A safety breaker stopped new runs from dispatching until someone clears it."
	}
	return ""
}

// Dispatching reports whether new runs may start.
func (s Status) Dispatching() bool { return s == StatusPublished }

// Types of workflow: an agent is a workflow whose graph is a trigger and
// one Agent step, and whose runs are agent runs.
const (
	TypeWorkflow = "workflow"
	TypeAgent    = "agent"
)

// Workflow is a durable container of versions.
type Workflow struct {
	ID          string `json:"id"`
	WorkspaceID string `json:"workspaceId"`
	// Type is TypeWorkflow or TypeAgent.
	Type            string `json:"type"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	Status          Status `json:"status"`
	StatusLabel     string `json:"statusLabel"`
	StatusText      string `json:"statusDescription"`
	ActiveVersionID string `json:"activeVersionId,omitempty"`
	// AutoResumeReauth: runs held for reauthorization resume by themselves
	// once their connection is reconnected.
	AutoResumeReauth bool `json:"autoResumeReauth"`
	// MaxRunsPerMinute trips the safety breaker (0: no limit).
	MaxRunsPerMinute int `json:"maxRunsPerMinute"`
	// ErrorWorkflowID is the workflow started, through its Error trigger,
	// for each failed run of this one ("": none).
	ErrorWorkflowID string    `json:"errorWorkflowId,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

// VersionState is where a version stands.
type VersionState string

const (
	VersionDraft    VersionState = "draft"
	VersionActive   VersionState = "active"
	VersionInactive VersionState = "inactive"
)

// Version is one numbered version of a workflow's graph.
type Version struct {
	ID          string       `json:"id"`
	WorkflowID  string       `json:"workflowId"`
	Number      int          `json:"number"`
	State       VersionState `json:"state"`
	Graph       Graph        `json:"graph"`
	BasedOn     int          `json:"basedOn,omitempty"`
	CreatedAt   time.Time    `json:"createdAt"`
	PublishedAt *time.Time   `json:"publishedAt,omitempty"`
}

// Title is how the version is named in lists: "v3", or "Draft from v2".
func (v Version) Title() string {
	if v.State == VersionDraft {
		if v.BasedOn > 0 {
			return "Draft from v" + strconv.Itoa(v.BasedOn)
		}
		return "Draft"
	}
	return "v" + strconv.Itoa(v.Number)
}
