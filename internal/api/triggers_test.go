package api

import (
	"testing"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/trigger"
)

func TestPollViewStates(t *testing.T) {
	h := &Handler{baseURL: "https://tj.example"}
	ws := account.Workspace{Slug: "acme"}
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	moved := now.Add(-90 * time.Second)
	for _, tc := range []struct {
		name string
		st   trigger.PollState
		want string
	}{
		{"not primed", trigger.PollState{ConnectionID: "c1"}, "not-yet-primed"},
		{"listening", trigger.PollState{ConnectionID: "c1", Primed: true, CursorAt: &moved}, "listening"},
		{"failing", trigger.PollState{ConnectionID: "c1", Primed: true, Failures: 2, LastError: "the app answered 503"}, "failing"},
		{"held", trigger.PollState{ConnectionID: "c1", Primed: true, Held: true, Failures: 1, LastError: "the connection is in error"}, "held"},
	} {
		v := h.pollView(ws, tc.st, now)
		if v.State != tc.want {
			t.Errorf("%s: state %q, want %q", tc.name, v.State, tc.want)
		}
		if held := tc.want == "held"; held != (v.ConnectionPageURL == "https://tj.example/acme/connections/c1") || held != (v.NextPollAt == nil) {
			t.Errorf("%s: page %q, next poll %v", tc.name, v.ConnectionPageURL, v.NextPollAt)
		}
		if tc.st.CursorAt != nil && (v.CursorAgeSeconds == nil || *v.CursorAgeSeconds != 90) {
			t.Errorf("%s: cursor age %v, want 90", tc.name, v.CursorAgeSeconds)
		}
		if tc.st.CursorAt == nil && v.CursorAgeSeconds != nil {
			t.Errorf("%s: cursor age without a cursor time", tc.name)
		}
	}
}
