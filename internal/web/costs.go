package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"taskjuice/internal/account"
	"taskjuice/internal/apperr"
	"taskjuice/internal/llm"
	"taskjuice/internal/spend"
)

// errNoSpend answers the cost and model pages on a server built without
// the model services.
var errNoSpend = apperr.NotFound("Model spend is not available on this server.")

type costsData struct {
	Summary   spend.Summary
	Chart     spendChart
	Rows      []spend.Day // the days of the period so far, for the table
	Providers []llm.Provider
	CanSetCap bool
	CapValue  string
	CapError  string
}

func (h *Handler) costs(w http.ResponseWriter, r *http.Request, v view) {
	k, _ := keptForm(r)
	h.renderCosts(w, r, v, http.StatusOK, k.Values["cap"], k.Error)
}

func (h *Handler) renderCosts(w http.ResponseWriter, r *http.Request, v view, status int, capValue, capError string) {
	if h.Spend == nil || h.Models == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	now := time.Now().UTC()
	sum, err := h.Spend.Summary(r.Context(), v.Workspace.ID, now)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	providers, err := h.Models.List(r.Context(), v.Workspace.ID)
	if err != nil {
		h.errorPage(w, r, v.P, err)
		return
	}
	d := costsData{Summary: sum, Chart: newSpendChart(sum.PeriodSpend, now), Providers: providers,
		CanSetCap: v.P.Can(account.CapManageWorkspaces), CapValue: capValue, CapError: capError}
	if d.CapValue == "" && sum.Cap > 0 {
		d.CapValue = sum.Cap.Decimal()
	}
	for _, day := range sum.Days {
		if day.Date.After(now) {
			break
		}
		d.Rows = append(d.Rows, day)
	}
	v.Title, v.Data = "Costs · "+v.Workspace.Name, d
	h.render(w, r, status, "costs", v)
}

// setSpendCap saves the workspace's hard cap: owners and admins only.
func (h *Handler) setSpendCap(w http.ResponseWriter, r *http.Request, v view) {
	if h.Spend == nil {
		h.errorPage(w, r, v.P, errNoSpend)
		return
	}
	if !v.P.Can(account.CapManageWorkspaces) {
		h.errorPage(w, r, v.P, apperr.Forbidden(account.MsgAdminRequired))
		return
	}
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, v.P, errBadForm)
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("cap"))
	if raw == "" {
		raw = "0"
	}
	limit, err := llm.ParseMoney(raw)
	if err == nil {
		err = h.Spend.SetCap(r.Context(), v.Workspace.ID, limit)
	} else {
		err = apperr.Invalid("cap", "The cap "+llm.AmountProblem(err))
	}
	if err != nil {
		h.refuseForm(w, r, v.P, "/"+v.Workspace.Slug+"/analytics/costs", err, map[string]string{"cap": r.PostForm.Get("cap")})
		return
	}
	setFlash(w, "spend-cap-saved")
	redirect(w, r, "/"+v.Workspace.Slug+"/analytics/costs")
}

// spendChart is a bar chart of spend per day, drawn on the server as SVG.
type spendChart struct {
	Width, Height float64
	Title, Desc   string
	Empty         bool
	Bars          []chartBar
	Grid          []chartTick // horizontal lines with their amounts
	Days          []chartTick // day numbers under the axis
	Left, Bottom  float64     // the plot's left edge and baseline
	Right         float64
	// CenterX and CenterY place the "no spend" note.
	CenterX, CenterY float64
}

type chartBar struct {
	X, Y, W, H float64
	Label      string // "5 Nov: $0.12", the bar's tooltip
	Future     bool
}

type chartTick struct {
	X, Y  float64
	Label string
}

// newSpendChart lays out the bars of a period, highest day at the top,
// the amounts rounded to a readable scale.
func newSpendChart(ps spend.PeriodSpend, now time.Time) spendChart {
	c := spendChart{Width: 720, Height: 240, Left: 64, Right: 712, Bottom: 208, CenterX: 388, CenterY: 110}
	const top = 12
	var highest llm.Money
	var best spend.Day
	for _, d := range ps.Days {
		if d.Spent > highest {
			highest, best = d.Spent, d
		}
	}
	label := ps.Period.Label()
	c.Title = "Spend per day, " + label
	if highest == 0 {
		c.Empty = true
		c.Desc = "No model spend yet in " + label + "."
	} else {
		c.Desc = fmt.Sprintf("%s spent in %s; the most in one day was %s on %s.", ps.Spent, label, highest, best.Date.Format("2 January"))
	}
	scale := niceScale(highest)
	plotH := c.Bottom - top
	slot := (c.Right - c.Left) / float64(max(len(ps.Days), 1))
	for i, d := range ps.Days {
		h := 0.0
		if scale > 0 {
			h = plotH * float64(d.Spent) / float64(scale)
		}
		if d.Spent > 0 && h < 1 {
			h = 1 // a day with any spend shows
		}
		x := c.Left + float64(i)*slot
		c.Bars = append(c.Bars, chartBar{X: x + slot*0.15, Y: c.Bottom - h, W: slot * 0.7, H: h,
			Label: d.Date.Format("2 Jan") + ": " + d.Spent.String(), Future: d.Date.After(now)})
		if day := d.Date.Day(); day == 1 || day%5 == 0 {
			c.Days = append(c.Days, chartTick{X: x + slot/2, Y: c.Bottom + 18, Label: fmt.Sprint(day)})
		}
	}
	for i := 0; i <= 4; i++ {
		amount := scale * llm.Money(i) / 4
		c.Grid = append(c.Grid, chartTick{X: c.Left - 8, Y: c.Bottom - plotH*float64(i)/4, Label: axisLabel(amount)})
	}
	return c
}

// niceScale is the top of the chart's axis: the smallest of 1, 2, 2.5 or 5
// times a power of ten at or above m (a dollar when there is no spend).
func niceScale(m llm.Money) llm.Money {
	if m <= 0 {
		return llm.Dollar
	}
	for p := llm.Money(1); p <= llm.MaxMoney; p *= 10 {
		for _, f := range []llm.Money{10, 20, 25, 50} {
			if s := p * f / 10; s >= m && s > 0 {
				return s
			}
		}
	}
	return m
}

// axisLabel writes an axis amount as short as it reads: "$0", "$0.25",
// "$10", "$0.0005".
func axisLabel(m llm.Money) string {
	s := m.Decimal()
	if strings.HasSuffix(s, ".00") {
		s = strings.TrimSuffix(s, ".00")
	}
	return "$" + s
}
