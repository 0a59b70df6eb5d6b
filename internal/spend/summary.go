package spend

import (
	"context"
	"fmt"
	"time"

	"taskjuice/internal/db"
	"taskjuice/internal/llm"
)

// CapStatus is the cost page's word for where spend stands.
type CapStatus string

const (
	NoCap      CapStatus = "No cap"
	UnderCap   CapStatus = "Under cap"
	NearCap    CapStatus = "Near cap" // at 80% of the cap or more
	CapReached CapStatus = "Cap reached"
)

// StatusOf says where spent stands against limit (0: no cap).
func StatusOf(spent, limit llm.Money) CapStatus {
	switch {
	case limit <= 0:
		return NoCap
	case spent >= limit:
		return CapReached
	case int64(spent)*100 >= int64(limit)*80:
		return NearCap
	}
	return UnderCap
}

// Day is the settled spend of one day.
type Day struct {
	Date  time.Time `json:"date"`
	Spent llm.Money `json:"spentUsd"`
}

// PeriodSpend is the spend of one period, day by day (every day of the
// period, days without spend at zero).
type PeriodSpend struct {
	Period Period    `json:"period"`
	Spent  llm.Money `json:"spentUsd"`
	Days   []Day     `json:"days"`
}

// Summary is where a workspace's spend stands in the period of now.
type Summary struct {
	PeriodSpend
	// Held is what open reservations (calls in progress) hold.
	Held llm.Money `json:"heldUsd"`
	// Cap is the hard cap per period; 0 means none.
	Cap    llm.Money `json:"capUsd"`
	Status CapStatus `json:"capStatus"`
	// Percent is the settled spend in percent of the cap, rounded down
	// (0 without a cap).
	Percent  int         `json:"percentOfCap"`
	Previous PeriodSpend `json:"previous"`
}

// Summary reports the spend of the period of now, its cap, and the daily
// spend of this period and the one before.
func (s *Service) Summary(ctx context.Context, workspaceID string, now time.Time) (Summary, error) {
	q := s.db.Read()
	per := PeriodOf(now)
	limit, err := s.capOf(ctx, q, workspaceID)
	if err != nil {
		return Summary{}, err
	}
	_, held, err := s.totals(ctx, q, workspaceID, per.Key(), "", now)
	if err != nil {
		return Summary{}, err
	}
	cur, err := s.periodSpend(ctx, q, workspaceID, per)
	if err != nil {
		return Summary{}, err
	}
	prev, err := s.periodSpend(ctx, q, workspaceID, per.Previous())
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{PeriodSpend: cur, Held: held, Cap: limit, Status: StatusOf(cur.Spent, limit), Previous: prev}
	if limit > 0 {
		sum.Percent = int(int64(cur.Spent) * 100 / int64(limit))
	}
	return sum, nil
}

func (s *Service) periodSpend(ctx context.Context, q db.Querier, workspaceID string, per Period) (PeriodSpend, error) {
	rows, err := q.QueryContext(ctx, `SELECT day, CAST(SUM(cost_micros) AS BIGINT) FROM spend_entries
		WHERE workspace_id = $1 AND period = $2 AND status = 'settled' GROUP BY day`, workspaceID, per.Key())
	if err != nil {
		return PeriodSpend{}, fmt.Errorf("read daily spend: %w", err)
	}
	defer rows.Close()
	byDay := map[string]llm.Money{}
	for rows.Next() {
		var day string
		var c int64
		if err := rows.Scan(&day, &c); err != nil {
			return PeriodSpend{}, fmt.Errorf("scan daily spend: %w", err)
		}
		byDay[day] = llm.Money(c)
	}
	if err := rows.Err(); err != nil {
		return PeriodSpend{}, fmt.Errorf("read daily spend: %w", err)
	}
	out := PeriodSpend{Period: per}
	for _, d := range per.Days() {
		m := byDay[dayKey(d)]
		out.Days = append(out.Days, Day{Date: d, Spent: m})
		out.Spent += m
	}
	return out, nil
}
