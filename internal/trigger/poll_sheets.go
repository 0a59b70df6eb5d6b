package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

func init() {
	pollSources[[2]string{"google-sheets", "new-row"}] = sheetRows{}
}

// sheetRows is Google Sheets' "New row": the sheet's values read whole
// (spreadsheets.values.get, majorDimension=ROWS); the first row is the
// header, the cursor is the number of the last row seen, and the rows
// below it are new. The API leaves out empty trailing rows, so they are
// never items; an empty row between filled ones is skipped but counted.
// A sheet that shrinks keeps its cursor: only rows below the furthest one
// seen are new.
type sheetRows struct{}

// sheetsBase is where the Sheets API lives; tests point the connection's
// allowed hosts, not this, at their server.
const sheetsBase = "https://sheets.googleapis.com/v4/spreadsheets/"

type sheetValues struct {
	Range          string     `json:"range"`
	MajorDimension string     `json:"majorDimension"`
	Values         [][]string `json:"values"`
}

func (sheetRows) endpoint(c pollCall) (string, error) {
	id := strings.TrimSpace(c.inputs["spreadsheetId"])
	sheet := c.inputs["sheet"]
	if id == "" || strings.TrimSpace(sheet) == "" {
		return "", errors.New("the trigger names no spreadsheet or sheet")
	}
	base := sheetsBase
	if a, ok := c.app.Action("get-values"); ok {
		if i := strings.Index(a.URL, "{spreadsheetId}"); i > 0 {
			base = a.URL[:i]
		}
	}
	// A1 notation: the sheet's name quoted, quotes doubled, so names with
	// spaces or "!" read as one sheet.
	rng := "'" + strings.ReplaceAll(sheet, "'", "''") + "'!A:ZZ"
	return base + url.PathEscape(id) + "/values/" + url.PathEscape(rng) +
		"?majorDimension=ROWS&valueRenderOption=FORMATTED_VALUE", nil
}

func (s sheetRows) read(ctx context.Context, c pollCall) ([][]string, error) {
	u, err := s.endpoint(c)
	if err != nil {
		return nil, err
	}
	var v sheetValues
	if _, err := c.fetch(ctx, "GET", u, nil, &v); err != nil {
		return nil, err
	}
	return v.Values, nil
}

// items are the filled rows numbered above from (1-based) up to the end.
func (s sheetRows) items(c pollCall, rows [][]string, from int) ([]Item, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	header := rows[0]
	var out []Item
	for i := max(from, 2); i <= len(rows); i++ {
		row := rows[i-1]
		empty := true
		for _, cell := range row {
			if strings.TrimSpace(cell) != "" {
				empty = false
				break
			}
		}
		if empty {
			continue
		}
		obj := map[string]any{}
		for j, cell := range row {
			key := columnName(j)
			if j < len(header) && strings.TrimSpace(header[j]) != "" {
				key = header[j]
			}
			if _, taken := obj[key]; taken {
				key = columnName(j)
			}
			obj[key] = cell
		}
		obj["row"] = i
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out = append(out, Item{
			ID:      c.inputs["spreadsheetId"] + "/" + c.inputs["sheet"] + "/" + strconv.Itoa(i),
			Payload: b,
			Cursor:  strconv.Itoa(i),
		})
	}
	return out, nil
}

// columnName is a column's letters: 0 → A, 26 → AA.
func columnName(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('A'+(i-1)%26)) + name
	}
	return name
}

func (s sheetRows) latest(ctx context.Context, c pollCall, n int) ([]Item, string, error) {
	rows, err := s.read(ctx, c)
	if err != nil {
		return nil, "", err
	}
	last := max(len(rows), 1)
	if n <= 0 {
		return nil, strconv.Itoa(last), nil
	}
	items, err := s.items(c, rows, 2)
	if err != nil {
		return nil, "", err
	}
	if len(items) > n {
		items = items[len(items)-n:]
	}
	return items, strconv.Itoa(last), nil
}

func (s sheetRows) after(ctx context.Context, c pollCall, cursor string) ([]Item, string, bool, error) {
	seen := 1
	if cursor != "" {
		v, err := strconv.Atoi(cursor)
		if err != nil || v < 1 {
			return nil, "", false, fmt.Errorf("the trigger's saved position %q is not a row number", cursor)
		}
		seen = v
	}
	rows, err := s.read(ctx, c)
	if err != nil {
		return nil, "", false, err
	}
	items, err := s.items(c, rows, seen+1)
	if err != nil {
		return nil, "", false, err
	}
	next := strconv.Itoa(max(seen, len(rows)))
	return items, next, false, nil
}
