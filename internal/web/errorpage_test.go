package web

import (
	"fmt"
	"html"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"taskjuice/internal/textcheck"
)

// TestErrorPageUnstorableText: PostgreSQL refusing text is the edge's 400
// page, not a 500.
func TestErrorPageUnstorableText(t *testing.T) {
	h, err := New(Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ErrorPage(rec, httptest.NewRequest("POST", "/signin", nil), fmt.Errorf("open session: %w", &pgconn.PgError{Code: "22021"}))
	if page := html.UnescapeString(rec.Body.String()); rec.Code != 400 || !strings.Contains(page, textcheck.Message) {
		t.Errorf("got %d, want 400 with %q; page: %.300s", rec.Code, textcheck.Message, page)
	}
}
