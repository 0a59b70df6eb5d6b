// Package connection owns connections — one stored credential for one app
// in one workspace — their encrypted secrets (the vault table), their status
// and their health history.
package connection

import (
	"encoding/json"
	"time"
)

// Status is a connection's state; exactly these four exist.
type Status string

const (
	StatusActive  Status = "active"
	StatusPending Status = "pending"
	StatusError   Status = "error"
	StatusRevoked Status = "revoked"
)

// Statuses lists every status, in the order filters show them.
var Statuses = []Status{StatusActive, StatusPending, StatusError, StatusRevoked}

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusPending, StatusError, StatusRevoked:
		return true
	}
	return false
}

// Description is the sentence people see next to the status.
func (s Status) Description() string {
	switch s {
	case StatusActive:
		return "Connected and working."
	case StatusPending:
		return "Waiting for consent to be completed."
	case StatusError:
		return "Reconnection needed."
	case StatusRevoked:
		return "Access was withdrawn. Reconnect to use it again."
	}
	return ""
}

// Refreshable reports whether a token refresh may be attempted in this
// status; error and revoked need a reconnect instead.
func (s Status) Refreshable() bool { return s == StatusActive || s == StatusPending }

// OwnerKind says who owns a connection.
type OwnerKind string

const (
	OwnerWorkspace OwnerKind = "workspace" // the agency's staff
	OwnerClient    OwnerKind = "client"    // a client of the workspace
)

// Connection is what may be shown about a connection: never its secret.
type Connection struct {
	ID                  string            `json:"id"`
	WorkspaceID         string            `json:"workspaceId"`
	AppKey              string            `json:"app"`
	Label               string            `json:"label"`
	Status              Status            `json:"status"`
	StatusDescription   string            `json:"statusDescription"`
	StatusReason        string            `json:"statusReason,omitempty"`
	StatusChangedAt     time.Time         `json:"statusChangedAt"`
	Metadata            map[string]string `json:"metadata"`
	ExternalAccountID   string            `json:"externalAccountId,omitempty"`
	ExternalAccountName string            `json:"externalAccountName,omitempty"`
	OwnerKind           OwnerKind         `json:"ownerKind"`
	OwnerUserID         string            `json:"ownerUserId,omitempty"`
	AccessExpiresAt     *time.Time        `json:"accessExpiresAt,omitempty"`
	CreatedAt           time.Time         `json:"createdAt"`
	UpdatedAt           time.Time         `json:"updatedAt"`
	// credentialVersion counts changes of the stored secret; not shown.
	credentialVersion int64
}

// ActorKind says who caused a change.
type ActorKind string

const (
	ActorUser   ActorKind = "user"
	ActorClient ActorKind = "client"
	ActorSystem ActorKind = "system"
)

// Actor is who caused a change: a person (staff or client) or the system.
type Actor struct {
	Kind   ActorKind
	UserID string
}

// System is the actor for changes nobody asked for (a refresh that failed).
var System = Actor{Kind: ActorSystem}

// Event is one entry of a connection's health history.
type Event struct {
	ID           string            `json:"id"`
	ConnectionID string            `json:"connectionId"`
	At           time.Time         `json:"at"`
	From         Status            `json:"from"`
	To           Status            `json:"to"`
	Reason       string            `json:"reason"`
	ActorKind    ActorKind         `json:"actorKind"`
	ActorUserID  string            `json:"actorUserId,omitempty"`
	Detail       map[string]string `json:"detail,omitempty"`
}

func encodeMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func decodeMap(s string) map[string]string {
	m := map[string]string{}
	_ = json.Unmarshal([]byte(s), &m)
	return m
}

// String is the status word.
func (s Status) String() string { return string(s) }
