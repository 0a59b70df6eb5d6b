package engine

import (
	"strings"
	"time"

	"taskjuice/internal/apperr"
)

// FilterFromQuery reads a runs filter from a list's query parameters, as
// the page and the API share them (so a filter is a link): status,
// reason, id (a prefix), workflow, source, error, from and to (a date,
// 2006-01-02, or a time, RFC 3339; to is exclusive), and field, match
// (equals or contains) and value for a value in the trigger payload or a
// step's output.
func FilterFromQuery(get func(string) string) (ListFilter, error) {
	f := ListFilter{Status: Status(get("status")), PauseReason: PauseReason(get("reason")), IDPrefix: strings.TrimSpace(get("id")),
		WorkflowID: strings.TrimSpace(get("workflow")), Source: strings.TrimSpace(get("source")), ErrorCode: strings.TrimSpace(get("error"))}
	switch f.Status {
	case "", StatusPending, StatusRunning, StatusWaiting, StatusPaused, StatusCompleted, StatusFailed, StatusCancelled:
	default:
		return f, apperr.Invalid("status", "status must be pending, running, waiting, paused, completed, failed or cancelled")
	}
	switch f.PauseReason {
	case "", PauseReauth, PauseOperator, PauseThroughput, PauseSpendCap:
	default:
		return f, apperr.Invalid("reason", "reason must be reauth, operator, throughput or spend-cap")
	}
	if len(f.IDPrefix) > 36 || len(f.WorkflowID) > 64 || len(f.Source) > 64 || len(f.ErrorCode) > 64 {
		return f, apperr.Invalid("id", "A filter value is at most 64 characters")
	}
	var err error
	if f.Value, err = parseValueFilter(get("field"), get("match"), get("value")); err != nil {
		return f, err
	}
	if f.From, err = filterTime(get("from"), "from"); err != nil {
		return f, err
	}
	if f.To, err = filterTime(get("to"), "to"); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, apperr.Invalid("to", "to must be after from")
	}
	return f, nil
}

func filterTime(s, field string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, apperr.Invalid(field, field+" must be a date (2026-12-04) or a time (2026-12-04T09:30:00Z)")
}
