package trigger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"taskjuice/internal/db"
	"taskjuice/internal/db/dbtest"
)

// fakeSheet answers spreadsheets.values.get for one sheet, like the Sheets
// API: majorDimension ROWS, trailing empty rows and cells left out.
type fakeSheet struct {
	t    *testing.T
	mu   sync.Mutex
	rows [][]string
}

const testSpreadsheet = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"

func (s *fakeSheet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wantPath := "/v4/spreadsheets/" + testSpreadsheet + "/values/'Leads 2026'!A:ZZ"
	if r.Method != http.MethodGet || r.URL.Path != wantPath || r.URL.Query().Get("majorDimension") != "ROWS" ||
		!strings.Contains(r.URL.EscapedPath(), "Leads%202026") {
		s.t.Errorf("request %s %s (escaped %q), want GET %s?majorDimension=ROWS with the range escaped", r.Method, r.URL.Path, r.URL.EscapedPath(), wantPath)
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":{"code":400,"message":"Unable to parse range","status":"INVALID_ARGUMENT"}}`))
		return
	}
	rows := s.rows
	for len(rows) > 0 && len(rows[len(rows)-1]) == 0 {
		rows = rows[:len(rows)-1]
	}
	body := map[string]any{"range": fmt.Sprintf("'Leads 2026'!A1:ZZ%d", max(len(rows), 1)), "majorDimension": "ROWS"}
	if len(rows) > 0 {
		body["values"] = rows
	}
	_ = json.NewEncoder(w).Encode(body)
}

// add appends n filled rows and returns their run keys.
func (s *fakeSheet) add(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for range n {
		s.rows = append(s.rows, []string{fmt.Sprintf("lead%d@example.com", len(s.rows)), "Ada", ""})
		keys = append(keys, fmt.Sprintf("google-sheets:new-row:%s/Leads 2026/%d", testSpreadsheet, len(s.rows)))
	}
	return keys
}

func (s *fakeSheet) appendRow(cells ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, cells)
}

func newSheetFixture(t *testing.T, d *db.DB, includeRecent bool) (*appFixture, *fakeSheet) {
	sheet := &fakeSheet{t: t, rows: [][]string{{"Email", "Name", "Company"}}}
	f := newAppFixture(t, d, &fakeApp{handler: sheet}, "google-sheets", "new-row",
		map[string]string{"spreadsheetId": testSpreadsheet, "sheet": "Leads 2026"}, includeRecent)
	return f, sheet
}

func TestPollSheetsNewRows(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, sheet := newSheetFixture(t, d, false)
		sheet.add(2)
		if n := f.tick(t); n != 0 || f.cursor(t) != "3" {
			t.Fatalf("first poll: %d runs, cursor %q, want 0 runs and cursor 3", n, f.cursor(t))
		}
		sheet.appendRow("ada@example.com", "Ada Lovelace", "Analytical Engines")
		sheet.appendRow()                    // an empty row in between: skipped, counted
		sheet.appendRow("grace@example.com") // short row: missing cells left out
		sheet.appendRow()                    // an empty trailing row: not an item
		if n := f.tick(t); n != 2 {
			t.Fatalf("second poll started %d runs, want 2", n)
		}
		ids, payloads := f.started(t, false)
		want := []string{"google-sheets:new-row:" + testSpreadsheet + "/Leads 2026/4", "google-sheets:new-row:" + testSpreadsheet + "/Leads 2026/6"}
		if join(ids) != join(want) {
			t.Fatalf("runs %v, want %v", ids, want)
		}
		var row map[string]any
		if err := json.Unmarshal(payloads[0], &row); err != nil || row["Email"] != "ada@example.com" || row["Company"] != "Analytical Engines" || row["row"] != float64(4) {
			t.Fatalf("payload of row 4: %s", payloads[0])
		}
		if err := json.Unmarshal(payloads[1], &row); err != nil || row["Email"] != "grace@example.com" || row["row"] != float64(6) {
			t.Fatalf("payload of row 6: %s", payloads[1])
		}
		if n := f.tick(t); n != 0 || f.cursor(t) != "6" {
			t.Fatalf("poll with nothing new: %d runs, cursor %q", n, f.cursor(t))
		}
	})
}

func TestPollSheetsIncludeRecent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, sheet := newSheetFixture(t, d, true)
		all := sheet.add(5)
		if n := f.tick(t); n != 3 {
			t.Fatalf("first poll with recent rows started %d, want 3", n)
		}
		ids, _ := f.started(t, false)
		if join(ids) != join(all[2:]) {
			t.Fatalf("recent rows %v, want %v oldest first", ids, all[2:])
		}
	})
}

func TestPollSheetsFailures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		f, sheet := newSheetFixture(t, d, false)
		f.app.body429 = `{"error":{"code":429,"message":"Quota exceeded for quota metric 'Read requests'","status":"RESOURCE_EXHAUSTED"}}`
		f.tick(t)
		checkTransientAndHeld(t, f, sheet.add)
	})
}
