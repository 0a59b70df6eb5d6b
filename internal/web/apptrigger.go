package web

import (
	"net/url"
	"strconv"
	"strings"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/trigger"
	"taskjuice/internal/workflow"
)

// appTriggerCard is what the trigger card shows for an app trigger: the
// app, its trigger, the trigger's inputs, the connection it reads through.
type appTriggerCard struct {
	App, Trigger  string
	Values        map[string]string // the inputs, by name
	IncludeRecent bool
	Interval      string // seconds, as typed
	Connection    string // a connection id, or "client"

	// Filled for the page by fillAppTrigger.
	Apps     []catalog.App // apps with a trigger TaskJuice can poll
	Chosen   *catalog.App
	Triggers []catalog.Trigger
	Inputs   []inputField
	Conns    []connOption
	OAuth    bool
	// Instant is true when the chosen trigger is pushed by the app: no
	// interval, nothing recent to include.
	Instant bool
	// Client is the request flow when the client provides the connection.
	Client clientSlot
}

func appTriggerCardOf(n workflow.Node, c *workflow.AppTriggerConfig) appTriggerCard {
	a := appTriggerCard{App: c.App, Trigger: c.Trigger, Values: c.Inputs, IncludeRecent: c.IncludeRecent}
	if c.IntervalSeconds > 0 {
		a.Interval = strconv.Itoa(c.IntervalSeconds)
	}
	if n.Connection != nil {
		a.Connection = n.Connection.ID
		if n.Connection.ClientProvides {
			a.Connection = "client"
		}
	}
	return a
}

// pollable lists an app's triggers TaskJuice can poll or listen to.
func pollable(app catalog.App) []catalog.Trigger {
	var out []catalog.Trigger
	for _, t := range app.Triggers {
		if (t.Mode == catalog.TriggerPoll && trigger.CanPoll(app.Key, t.Key)) || (t.Mode == catalog.TriggerWebhook && trigger.CanListen(app.Key, t.Key)) {
			out = append(out, t)
		}
	}
	return out
}

// fillAppTrigger adds the choices of the card: apps with a trigger to
// poll, the chosen app's triggers, the chosen trigger's inputs and the
// workspace's connections of the app.
func (h *Handler) fillAppTrigger(a *appTriggerCard, conns []connection.Connection) {
	for _, app := range h.Catalog.Apps() {
		if len(pollable(app)) > 0 {
			a.Apps = append(a.Apps, app)
		}
	}
	app, ok := h.Catalog.App(a.App)
	if !ok {
		return
	}
	a.Chosen, a.Triggers, a.OAuth = &app, pollable(app), app.IsOAuth()
	if tr, ok := app.Trigger(a.Trigger); ok {
		a.Instant = tr.Mode == catalog.TriggerWebhook
		for _, in := range tr.Inputs {
			a.Inputs = append(a.Inputs, inputField{Field: in, Value: a.Values[in.Name]})
		}
	}
	for _, cn := range conns {
		if cn.AppKey == app.Key {
			a.Conns = append(a.Conns, connOption{ID: cn.ID, Label: cn.Label, Status: cn.Status})
		}
	}
}

// readAppTriggerForm reads the app trigger's fields of the trigger form
// over what was saved (a field the form lacks keeps its value).
func readAppTriggerForm(pf url.Values, a appTriggerCard) (appTriggerCard, fieldErrors) {
	errs := fieldErrors{}
	prevApp := a.App
	if v, ok := pf["app"]; ok && len(v) > 0 {
		a.App = strings.TrimSpace(v[0])
	}
	if v, ok := pf["trigger"]; ok && len(v) > 0 {
		a.Trigger = strings.TrimSpace(v[0])
	}
	if a.App != prevApp {
		// Another app: its first trigger, no inputs, no connection yet.
		a.Trigger, a.Values, a.Connection = "", nil, ""
	}
	if v, ok := pf["connection"]; ok && len(v) > 0 && a.App == prevApp {
		a.Connection = strings.TrimSpace(v[0])
	}
	values := map[string]string{}
	for k, v := range a.Values {
		values[k] = v
	}
	for name, v := range pf {
		if in, ok := strings.CutPrefix(name, "input."); ok && len(v) > 0 {
			if val := strings.TrimSpace(v[0]); val != "" {
				values[in] = val
			} else {
				delete(values, in)
			}
		}
	}
	a.Values = values
	if _, ok := pf["kind"]; ok {
		// The card's form was sent: an unchecked box is false.
		a.IncludeRecent = pf.Get("includeRecent") == "on"
	}
	if v, ok := pf["intervalSeconds"]; ok && len(v) > 0 {
		a.Interval = strings.TrimSpace(v[0])
		if a.Interval != "" {
			if n, err := strconv.Atoi(a.Interval); err != nil || n < 0 || n > workflow.MaxPollIntervalSeconds {
				errs["intervalSeconds"] = "Enter the seconds between polls, from 0 (every minute) to " + strconv.Itoa(workflow.MaxPollIntervalSeconds)
			}
		}
	}
	if len(errs) > 0 {
		return a, errs
	}
	return a, nil
}

// config is the trigger's configuration.
func (a appTriggerCard) config() workflow.AppTriggerConfig {
	c := workflow.AppTriggerConfig{App: a.App, Trigger: a.Trigger, IncludeRecent: a.IncludeRecent}
	if trigger.CanListen(a.App, a.Trigger) {
		c.IncludeRecent = false // an instant trigger has nothing recent to read
	} else if n, err := strconv.Atoi(a.Interval); err == nil {
		c.IntervalSeconds = n
	}
	if len(a.Values) > 0 {
		c.Inputs = a.Values
	}
	return c
}

func (a appTriggerCard) binding() *workflow.Binding {
	switch a.Connection {
	case "":
		return nil
	case "client":
		return &workflow.Binding{ClientProvides: true}
	}
	return &workflow.Binding{ID: a.Connection}
}
