package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
	"taskjuice/internal/egress"
	"taskjuice/internal/workflow"
)

// Builtins are the executors of the built-in node kinds (Call Workflow is
// run by the engine itself, since it starts a run). hc sends HTTP steps
// without a connection; nil refuses private addresses (egress.Policy{}),
// and an operator's wider policy comes in through an egress.Client.
func Builtins(cat *catalog.Catalog, apps *connection.AppClient, hc *http.Client) map[workflow.Kind]Executor {
	if hc == nil {
		hc = egress.Client(egress.Policy{}, 2*time.Minute)
	}
	return map[workflow.Kind]Executor{
		workflow.NodeBranch:    branch,
		workflow.NodeSwitch:    switchNode,
		workflow.NodeTransform: transform,
		workflow.NodeDelay:     delay,
		workflow.NodeApproval:  approval,
		workflow.NodeLoop:      loop,
		workflow.NodeFilter:    filterNode,
		workflow.NodeSort:      sortNode,
		workflow.NodeStopError: stopError,
		workflow.NodeRespond:   respondNode,
		workflow.NodeParallel:  parallelNode,
		workflow.NodeMerge:     mergeNode,
		workflow.NodeCode:      codeNode(CodeLimits{}),
		workflow.NodeHTTP:      httpNode(apps, hc),
		workflow.NodeAction:    action(cat, apps),
	}
}

func decode[T any](c Call) (*T, error) {
	var v T
	if err := json.Unmarshal(nonEmpty(c.Config), &v); err != nil {
		return nil, &StepError{Code: "CONFIG_INVALID", Message: "The step's settings could not be read after evaluation: " + err.Error()}
	}
	return &v, nil
}

// truthy reads a condition's evaluated value.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		s := strings.TrimSpace(strings.ToLower(x))
		return s != "" && s != "false" && s != "0" && s != "no" && s != "null"
	case float64:
		return x != 0
	case nil:
		return false
	}
	return true
}

func branch(_ context.Context, c Call) (Outcome, error) {
	var cfg struct {
		Condition any `json:"condition"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	ok := truthy(cfg.Condition)
	fmt.Fprintf(c.Console, "condition is %v\n", ok)
	return Outcome{Output: map[string]any{"result": ok}, Path: map[bool]string{true: "true", false: "false"}[ok]}, nil
}

func switchNode(_ context.Context, c Call) (Outcome, error) {
	var cfg struct {
		Value any `json:"value"`
		Cases []struct {
			Name   string `json:"name"`
			Equals any    `json:"equals"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	v, _ := json.Marshal(cfg.Value)
	for _, cs := range cfg.Cases {
		if eq, _ := json.Marshal(cs.Equals); bytes.Equal(v, eq) {
			return Outcome{Output: map[string]any{"case": cs.Name}, Path: cs.Name}, nil
		}
	}
	return Outcome{Output: map[string]any{"case": "default"}, Path: "default"}, nil
}

func transform(_ context.Context, c Call) (Outcome, error) {
	var cfg struct {
		Output json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
		return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
	}
	return Outcome{Output: json.RawMessage(nonEmpty(cfg.Output))}, nil
}

func delay(_ context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.DelayConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	var until time.Time
	switch {
	case cfg.Duration != "":
		d, err := time.ParseDuration(cfg.Duration)
		if err != nil || d < 0 || d > workflow.MaxDelay {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("%q is not a duration of at most 30 days", cfg.Duration)}
		}
		until = c.Now.Add(d)
	default:
		t, err := time.Parse(time.RFC3339, cfg.Until)
		if err != nil {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("%q is not a time like 2026-01-02T15:04:05Z", cfg.Until)}
		}
		until = t
	}
	return Outcome{Output: map[string]any{"waitedUntil": until.UTC()}, WaitUntil: &until}, nil
}

func approval(_ context.Context, c Call) (Outcome, error) {
	cfg, err := decode[workflow.ApprovalConfig](c)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Output: map[string]any{"message": cfg.Message}, WaitFor: "approval"}, nil
}

// classify turns an app's HTTP answer into a step error, or nil for 2xx.
func classify(status int, body []byte) *StepError {
	if status/100 == 2 {
		return nil
	}
	snippet := string(body)
	if len(snippet) > 500 {
		snippet = snippet[:500] + "…"
	}
	return &StepError{
		Code:           httpCode(status),
		Message:        fmt.Sprintf("The app answered HTTP %d", status),
		ProviderStatus: status,
		Retryable:      status == http.StatusTooManyRequests || status >= 500 || status == http.StatusRequestTimeout,
		Detail:         snippet,
	}
}

func httpCode(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "AUTH_REJECTED"
	case status == http.StatusNotFound:
		return "NOT_FOUND"
	case status == http.StatusTooManyRequests:
		return "RATE_LIMITED"
	case status >= 500:
		return "PROVIDER_ERROR"
	}
	return "REQUEST_REJECTED"
}

// response is a node's view of an HTTP answer.
func response(status int, header http.Header, body []byte) map[string]any {
	out := map[string]any{"status": status, "headers": flatten(header)}
	var v any
	if json.Unmarshal(body, &v) == nil {
		out["body"] = v
	} else {
		out["body"] = string(body)
	}
	return out
}

func flatten(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = strings.Join(v, ", ")
	}
	return out
}

func reauthOr(err error, connID string) error {
	if errors.Is(err, connection.ErrNeedsReauth) {
		return &ReauthError{ConnectionID: connID, Reason: "the app rejected the credential, or its refresh was refused"}
	}
	if se := egressError(err); se != nil {
		return se
	}
	return &StepError{Code: "NETWORK_ERROR", Message: "The app could not be reached", Retryable: true, Detail: err.Error()}
}

// egressError is the step error of a request refused before it left: a
// credential bound for a host its connection does not allow, or an address
// the operator keeps steps away from. Neither is retried: the same URL
// would be refused again.
func egressError(err error) *StepError {
	var hn *connection.HostNotAllowedError
	if errors.As(err, &hn) {
		return &StepError{Code: "HOST_NOT_ALLOWED", Message: hn.Error(), Detail: "allowed hosts: " + strings.Join(hn.Allowed, ", ")}
	}
	if b, ok := egress.IsBlocked(err); ok {
		return &StepError{Code: "ADDRESS_NOT_ALLOWED", Message: "Requests to loopback, private, link-local and metadata addresses are turned off on this server", Detail: b.Error()}
	}
	return nil
}

func httpNode(apps *connection.AppClient, hc *http.Client) Executor {
	return func(ctx context.Context, c Call) (Outcome, error) {
		cfg, err := decode[workflow.HTTPConfig](c)
		if err != nil {
			return Outcome{}, err
		}
		method := strings.ToUpper(cfg.Method)
		if cfg.TimeoutSeconds > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(cfg.TimeoutSeconds)*time.Second)
			defer cancel()
		}
		build := func(ctx context.Context) (*http.Request, error) {
			var body io.Reader
			if len(cfg.Body) > 0 && string(cfg.Body) != "null" {
				b := []byte(cfg.Body)
				var s string
				if json.Unmarshal(b, &s) == nil {
					b = []byte(s) // a string body is sent as text
				}
				body = bytes.NewReader(b)
			}
			req, err := http.NewRequestWithContext(ctx, method, cfg.URL, body)
			if err != nil {
				return nil, &StepError{Code: "CONFIG_INVALID", Message: "The request could not be built: " + err.Error()}
			}
			if body != nil && json.Valid(cfg.Body) {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range cfg.Headers {
				req.Header.Set(k, v)
			}
			req.Header.Set("Idempotency-Key", c.IdempotencyKey)
			return req, nil
		}
		fmt.Fprintf(c.Console, "%s %s\n", method, redactURL(cfg.URL))
		if c.Node.Connection != nil && c.Node.Connection.ID != "" {
			res, err := apps.Do(ctx, c.Node.Connection.ID, build)
			if err != nil {
				var se *StepError
				if errors.As(err, &se) {
					return Outcome{}, se
				}
				return Outcome{}, reauthOr(err, c.Node.Connection.ID)
			}
			fmt.Fprintf(c.Console, "→ HTTP %d\n", res.Status)
			if se := classify(res.Status, res.Body); se != nil {
				return Outcome{}, se
			}
			if f := res.Failure; f != nil {
				fmt.Fprintf(c.Console, "→ the app reported a failure: %s\n", f.Code)
				return Outcome{}, withRetryAfter(bodyFailure("The app", res.Status, res.Body, *f), res.Header)
			}
			return Outcome{Output: response(res.Status, res.Header, res.Body)}, nil
		}
		req, err := build(ctx)
		if err != nil {
			return Outcome{}, err
		}
		res, err := hc.Do(req)
		if err != nil {
			if se := egressError(err); se != nil {
				return Outcome{}, se
			}
			if ctx.Err() != nil {
				return Outcome{}, &StepError{Code: "TIMEOUT", Message: "The request timed out", Retryable: true}
			}
			return Outcome{}, &StepError{Code: "NETWORK_ERROR", Message: "The server could not be reached", Retryable: true, Detail: err.Error()}
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(res.Body, connection.MaxResponseBytes))
		fmt.Fprintf(c.Console, "→ HTTP %d\n", res.StatusCode)
		if se := classify(res.StatusCode, body); se != nil {
			return Outcome{}, se
		}
		return Outcome{Output: response(res.StatusCode, res.Header, body)}, nil
	}
}

// redactURL keeps query strings (which may hold keys) out of the console.
func redactURL(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}

var placeholder = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// action runs an app's catalog action through the node's connection.
func action(cat *catalog.Catalog, apps *connection.AppClient) Executor {
	return func(ctx context.Context, c Call) (Outcome, error) {
		var cfg struct {
			App    string                     `json:"app"`
			Action string                     `json:"action"`
			Inputs map[string]json.RawMessage `json:"inputs"`
		}
		if err := json.Unmarshal(nonEmpty(c.Config), &cfg); err != nil {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: err.Error()}
		}
		app, ok := cat.App(cfg.App)
		if !ok {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("Unknown app %q", cfg.App)}
		}
		act, ok := app.Action(cfg.Action)
		if !ok {
			return Outcome{}, &StepError{Code: "CONFIG_INVALID", Message: fmt.Sprintf("%s has no action %q", app.Name, cfg.Action)}
		}
		if c.Node.Connection == nil || c.Node.Connection.ID == "" {
			return Outcome{}, &StepError{Code: "AUTH_MISSING", Message: "This step has no connection yet"}
		}
		inputs := map[string]any{}
		for k, raw := range cfg.Inputs {
			var v any
			_ = json.Unmarshal(raw, &v)
			inputs[k] = v
		}
		target, err := renderURL(act, inputs)
		if err != nil {
			return Outcome{}, err
		}
		body, contentType, err := renderBody(act, inputs)
		if err != nil {
			return Outcome{}, err
		}
		build := func(ctx context.Context) (*http.Request, error) {
			var r io.Reader
			if body != nil {
				r = bytes.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, act.Method, target, r)
			if err != nil {
				return nil, err
			}
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Idempotency-Key", c.IdempotencyKey)
			return req, nil
		}
		fmt.Fprintf(c.Console, "%s: %s %s\n", app.Name, act.Method, redactURL(target))
		res, err := apps.Do(ctx, c.Node.Connection.ID, build)
		if err != nil {
			return Outcome{}, reauthOr(err, c.Node.Connection.ID)
		}
		fmt.Fprintf(c.Console, "→ HTTP %d\n", res.Status)
		if se := classify(res.Status, res.Body); se != nil {
			return Outcome{}, withRetryAfter(se, res.Header)
		}
		if f := res.Failure; f != nil {
			fmt.Fprintf(c.Console, "→ %s reported a failure: %s\n", app.Name, f.Code)
			return Outcome{}, withRetryAfter(bodyFailure(app.Name, res.Status, res.Body, *f), res.Header)
		}
		out := response(res.Status, res.Header, res.Body)
		return Outcome{Output: out["body"]}, nil
	}
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func renderURL(act catalog.Action, inputs map[string]any) (string, error) {
	var missing string
	u := placeholder.ReplaceAllStringFunc(act.URL, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := inputs[name]
		if !ok || text(v) == "" {
			missing = name
			return m
		}
		return url.PathEscape(text(v))
	})
	if missing != "" {
		return "", &StepError{Code: "INPUT_MISSING", Message: fmt.Sprintf("The input %q is needed to call %s", missing, act.Name)}
	}
	if len(act.Query) > 0 {
		q := url.Values{}
		for k, tmpl := range act.Query {
			if v := fill(tmpl, inputs); v != nil && text(v) != "" {
				q.Set(k, text(v))
			}
		}
		if enc := q.Encode(); enc != "" {
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			u += sep + enc
		}
	}
	return u, nil
}

// fill renders one template string: exactly one placeholder keeps the
// input's type; placeholders inside text are replaced as text.
func fill(tmpl string, inputs map[string]any) any {
	if m := placeholder.FindStringSubmatch(tmpl); m != nil && m[0] == tmpl {
		return inputs[m[1]]
	}
	return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string { return text(inputs[m[1:len(m)-1]]) })
}

// renderBody fills the action's body template; keys whose only placeholder
// names an empty input are left out.
func renderBody(act catalog.Action, inputs map[string]any) ([]byte, string, error) {
	if len(act.Body) == 0 {
		return nil, "", nil
	}
	var tmpl any
	if err := json.Unmarshal(act.Body, &tmpl); err != nil {
		return nil, "", &StepError{Code: "CONFIG_INVALID", Message: "The action's body template is not JSON"}
	}
	var walk func(v any) (any, bool)
	walk = func(v any) (any, bool) {
		switch x := v.(type) {
		case string:
			out := fill(x, inputs)
			if m := placeholder.FindStringSubmatch(x); m != nil && m[0] == x && (out == nil || out == "") {
				return nil, false
			}
			return out, true
		case map[string]any:
			m := map[string]any{}
			for k, val := range x {
				if r, keep := walk(val); keep {
					m[k] = r
				}
			}
			return m, true
		case []any:
			var a []any
			for _, val := range x {
				if r, keep := walk(val); keep {
					a = append(a, r)
				}
			}
			return a, true
		}
		return v, true
	}
	body, _ := walk(tmpl)
	switch act.BodyEncoding {
	case "", catalog.BodyJSON:
		b, err := json.Marshal(body)
		return b, "application/json", err
	case catalog.BodyForm:
		m, _ := body.(map[string]any)
		form := url.Values{}
		for k, v := range m {
			form.Set(k, text(v))
		}
		return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
	}
	return nil, "", &StepError{Code: "NOT_SUPPORTED", Message: fmt.Sprintf("This TaskJuice cannot send %s bodies yet", act.BodyEncoding)}
}
