// Package engine runs workflows: it records runs and their steps, claims
// due runs with leases (so several processes share the work on
// PostgreSQL), executes one step at a time committing each result before
// the next, holds runs instead of failing them when a connection needs
// reauthorization, and resumes, cancels and replays them.
package engine

import (
	"encoding/json"
	"time"
)

// Status is a run's status.
type Status string

const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting"
	StatusPaused    Status = "paused"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether the run is finished for good.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// RunKind tells workflow runs from agent runs: a held agent run resumes by
// itself once its connection is reconnected.
type RunKind string

const (
	KindWorkflow RunKind = "workflow"
	KindAgent    RunKind = "agent"
)

// PauseReason says why a run is paused.
type PauseReason string

const (
	PauseReauth     PauseReason = "reauth"
	PauseOperator   PauseReason = "operator"
	PauseThroughput PauseReason = "throughput"
	PauseSpendCap   PauseReason = "spend-cap"
)

// Run is one execution of one workflow version.
type Run struct {
	ID             string          `json:"id"`
	WorkspaceID    string          `json:"workspaceId"`
	WorkflowID     string          `json:"workflowId"`
	VersionID      string          `json:"versionId"`
	Kind           RunKind         `json:"kind"`
	Status         Status          `json:"status"`
	Source         string          `json:"source"`
	TriggerPayload json.RawMessage `json:"triggerPayload"`
	ReplayOf       string          `json:"replayOf,omitempty"`
	// RetryOf is the failed run this run retries from its failed step.
	RetryOf            string      `json:"retryOf,omitempty"`
	PauseReason        PauseReason `json:"pauseReason,omitempty"`
	PausedConnectionID string      `json:"pausedConnectionId,omitempty"`
	WaitReason         string      `json:"waitReason,omitempty"`
	Error              *StepError  `json:"error,omitempty"`
	StepsDone          int         `json:"stepsDone"`
	CreatedAt          time.Time   `json:"createdAt"`
	StartedAt          *time.Time  `json:"startedAt,omitempty"`
	FinishedAt         *time.Time  `json:"finishedAt,omitempty"`
}

// CodeReauthNeeded is the error code of a step held because its
// connection needs to be reconnected.
const CodeReauthNeeded = "AUTH_REAUTHORIZATION_NEEDED"

// StepStatus is one step attempt's status.
type StepStatus string

const (
	StepRunning   StepStatus = "running"
	StepCompleted StepStatus = "completed"
	StepFailed    StepStatus = "failed"
	StepWaiting   StepStatus = "waiting"
	StepPaused    StepStatus = "paused"
)

// Step is one execution attempt of one node.
type Step struct {
	ID             string          `json:"id"`
	RunID          string          `json:"runId"`
	NodeID         string          `json:"nodeId"`
	Attempt        int             `json:"attempt"`
	Status         StepStatus      `json:"status"`
	Input          json.RawMessage `json:"input,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
	Console        string          `json:"console,omitempty"`
	Error          *StepError      `json:"error,omitempty"`
	IdempotencyKey string          `json:"idempotencyKey"`
	StartedAt      time.Time       `json:"startedAt"`
	FinishedAt     *time.Time      `json:"finishedAt,omitempty"`

	// inputFrom, when set, says Input is the output of that frontier entry
	// of the run ("" for the trigger payload): the row names it instead of
	// storing a copy.
	inputFrom *string
	// redact: the node is marked "Don't store input and output".
	redact bool
}

// StepError is a structured step failure.
type StepError struct {
	Code           string `json:"code"`
	Message        string `json:"message"`
	ProviderStatus int    `json:"providerStatus,omitempty"`
	Retryable      bool   `json:"retryable"`
	// RetryAfterSeconds is how long the app asked to be left alone
	// (Retry-After) before a retry; the retry waits at least that long.
	RetryAfterSeconds int    `json:"retryAfterSeconds,omitempty"`
	Detail            string `json:"detail,omitempty"`
}

func (e *StepError) Error() string { return e.Code + ": " + e.Message }

// String is the status word.
func (s Status) String() string { return string(s) }

// String is the status word.
func (s StepStatus) String() string { return string(s) }
