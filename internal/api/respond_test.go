package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"taskjuice/internal/textcheck"
)

// TestWriteErrorUnstorableText: text that got past the edge check and was
// refused by PostgreSQL is the edge's 400, not a 500.
func TestWriteErrorUnstorableText(t *testing.T) {
	for _, code := range []string{"22021", "22P05"} {
		var logs strings.Builder
		rec := httptest.NewRecorder()
		err := fmt.Errorf("insert run: %w", &pgconn.PgError{Code: code, Message: "invalid byte sequence"})
		writeError(rec, httptest.NewRequest("POST", "/api/v1/x", nil), slog.New(slog.NewTextHandler(&logs, nil)), err)
		var body errorBody
		if jerr := json.Unmarshal(rec.Body.Bytes(), &body); jerr != nil {
			t.Fatalf("%s: body %q: %v", code, rec.Body, jerr)
		}
		if rec.Code != 400 || body.Error.Code != "invalid_text" || body.Error.Message != textcheck.Message {
			t.Errorf("%s: got %d %+v, want 400 invalid_text", code, rec.Code, body.Error)
		}
		if !strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("%s: the miss is not logged as a warning: %q", code, logs.String())
		}
	}
	rec := httptest.NewRecorder()
	writeError(rec, httptest.NewRequest("GET", "/api/v1/x", nil), slog.New(slog.DiscardHandler), &pgconn.PgError{Code: "23505"})
	if rec.Code != 500 {
		t.Errorf("another database error: got %d, want 500", rec.Code)
	}
}
