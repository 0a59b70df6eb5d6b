package spend

import (
	"encoding/json"
	"time"
)

// Period is the span a cap applies to: a calendar month in UTC.
type Period struct {
	Start time.Time // first instant, inclusive
	End   time.Time // first instant of the next period, exclusive
}

// PeriodOf returns the period t falls in.
func PeriodOf(t time.Time) Period {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return Period{Start: start, End: start.AddDate(0, 1, 0)}
}

// Key names the period in the database: "2026-11".
func (p Period) Key() string { return p.Start.Format("2006-01") }

// Label names the period for people: "November 2026".
func (p Period) Label() string { return p.Start.Format("January 2006") }

// Previous is the period before.
func (p Period) Previous() Period { return PeriodOf(p.Start.AddDate(0, 0, -1)) }

// Days lists the first instant of each day of the period.
func (p Period) Days() []time.Time {
	var out []time.Time
	for d := p.Start; d.Before(p.End); d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// MarshalJSON writes {"key", "label", "start", "end"}.
func (p Period) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Key   string    `json:"key"`
		Label string    `json:"label"`
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	}{p.Key(), p.Label(), p.Start, p.End})
}

// dayKey names a day in the database: "2026-11-05".
func dayKey(t time.Time) string { return t.UTC().Format("2006-01-02") }
