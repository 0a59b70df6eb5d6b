package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is a model call that failed. Its text never holds the API key.
type Error struct {
	// Status is the provider's HTTP status; 0 when no answer came (the
	// network failed) or the request was refused before it was sent.
	Status int
	// Code is the provider's error code ("invalid_api_key",
	// "rate_limit_exceeded", ...) or one of ours: "network",
	// "unknown_model", "invalid_request", "bad_response".
	Code    string
	Message string
	// Retryable says whether the same call may succeed later: true for
	// 429, 5xx, 408 and network failures; false for a bad key (401, 403)
	// and other refusals.
	Retryable bool
	// RetryAfter is the provider's Retry-After, if it sent one.
	RetryAfter time.Duration
	err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("model provider")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Unwrap returns the network error behind a failure without a status
// (context.Canceled, a timeout, ...), so errors.Is works on it.
func (e *Error) Unwrap() error { return e.err }

// IsRetryable reports whether err is a model call failure that may succeed
// if tried again.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// Client calls one provider's models with the workspace's key. It is safe
// for concurrent use. Get one from Service.Client for each piece of work;
// do not keep it past a change of the provider.
type Client struct {
	provider Provider
	models   map[string]ModelPrice
	// key is the decrypted API key. It goes in the Authorization header
	// and nowhere else.
	key  string
	http *http.Client
}

// Provider is the provider this client calls (without its key).
func (c *Client) Provider() Provider { return c.provider }

// Model returns a model of the provider and its price; a model the
// provider does not list is an *Error (unknown_model), since its cost
// could not be known.
func (c *Client) Model(name string) (ModelPrice, error) {
	m, ok := c.models[name]
	if !ok {
		return ModelPrice{}, &Error{Code: "unknown_model", Message: fmt.Sprintf("The provider %q has no model %q with a price. Add it under the workspace's model providers.", c.provider.Name, name)}
	}
	return m, nil
}

// Plan is what a request will be sent as, and the most it can cost.
type Plan struct {
	Model        ModelPrice
	PromptTokens int
	MaxTokens    int
	WorstCase    Money
}

// Plan prices req before it is sent: its estimated prompt tokens, the
// completion tokens it may use (MaxTokens, bounded by the model's
// MaxOutputTokens), and the worst-case cost to reserve against a spend
// cap. Complete sends exactly what Plan priced.
func (c *Client) Plan(req Request) (Plan, error) {
	m, err := c.Model(req.Model)
	if err != nil {
		return Plan{}, err
	}
	if err := checkRequest(req); err != nil {
		return Plan{}, err
	}
	maxTok := m.MaxOutputTokens
	if req.MaxTokens > 0 && req.MaxTokens < maxTok {
		maxTok = req.MaxTokens
	}
	prompt := EstimateTokens(req)
	return Plan{Model: m, PromptTokens: prompt, MaxTokens: maxTok, WorstCase: m.WorstCase(prompt, maxTok)}, nil
}

func checkRequest(req Request) error {
	invalid := func(format string, args ...any) error {
		return &Error{Code: "invalid_request", Message: fmt.Sprintf(format, args...)}
	}
	if len(req.Messages) == 0 {
		return invalid("A model call needs at least one message.")
	}
	for i, t := range req.Tools {
		if t.Name == "" {
			return invalid("Tool %d has no name.", i+1)
		}
		if len(t.Parameters) > 0 && !json.Valid(t.Parameters) {
			return invalid("The parameters of tool %q are not valid JSON.", t.Name)
		}
	}
	switch req.ToolChoice {
	case "", "auto", "none", "required":
	default:
		return invalid("Tool choice %q: want auto, none or required.", req.ToolChoice)
	}
	if f := req.ResponseFormat; f != nil {
		switch f.Type {
		case FormatJSONObject:
		case FormatJSONSchema:
			if len(f.Schema) > 0 && !json.Valid(f.Schema) {
				return invalid("The response schema is not valid JSON.")
			}
		default:
			return invalid("Response format %q: want json_object or json_schema.", f.Type)
		}
	}
	return nil
}

// maxResponseBytes bounds what is read of a provider's answer.
const maxResponseBytes = 8 << 20

// Complete sends req to the provider and returns its answer, with the
// usage it reported and what that cost. A failure is an *Error; see
// Error.Retryable. The call is not retried here: the caller decides, so
// that each attempt can be reserved against the spend cap.
func (c *Client) Complete(ctx context.Context, req Request) (Response, error) {
	plan, err := c.Plan(req)
	if err != nil {
		return Response{}, err
	}
	msgs, tools, err := encodePrompt(req)
	if err != nil {
		return Response{}, &Error{Code: "invalid_request", Message: "The request could not be encoded."}
	}
	body := wireRequest{Model: req.Model, Messages: msgs, ToolChoice: req.ToolChoice, MaxTokens: plan.MaxTokens}
	if tools != nil {
		body.Tools = tools
	} else {
		body.ToolChoice = ""
	}
	if f := req.ResponseFormat; f != nil {
		body.ResponseFormat = &wireFormat{Type: f.Type}
		if f.Type == FormatJSONSchema {
			name := f.Name
			if name == "" {
				name = "response"
			}
			body.ResponseFormat.JSONSchema = &wireJSONSchema{Name: name, Schema: f.Schema, Strict: f.Strict}
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Response{}, &Error{Code: "invalid_request", Message: "The request could not be encoded."}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.provider.BaseURL, "/")+"/chat/completions", bytes.NewReader(raw))
	if err != nil {
		return Response{}, &Error{Code: "invalid_request", Message: "The provider's base URL is not usable."}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.key)
	res, err := c.http.Do(hreq)
	if err != nil {
		return Response{}, c.networkError(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
	if err != nil {
		return Response{}, c.networkError(err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return Response{}, c.statusError(res, data)
	}
	if len(data) > maxResponseBytes {
		return Response{}, &Error{Status: res.StatusCode, Code: "bad_response", Message: "The provider's answer is too large.", Retryable: true}
	}
	var w wireResponse
	if err := json.Unmarshal(data, &w); err != nil || len(w.Choices) == 0 {
		return Response{}, &Error{Status: res.StatusCode, Code: "bad_response", Message: "The provider's answer is not a chat completion.", Retryable: true}
	}
	ch := w.Choices[0]
	out := Response{Model: w.Model, FinishReason: ch.FinishReason,
		Usage: Usage{PromptTokens: w.Usage.PromptTokens, CompletionTokens: w.Usage.CompletionTokens}}
	if ch.Message.Content != nil {
		out.Content = *ch.Message.Content
	}
	for _, tc := range ch.Message.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, toolCallFromWire(tc))
	}
	if out.Model == "" {
		out.Model = req.Model
	}
	out.Cost = plan.Model.Cost(out.Usage)
	return out, nil
}

// networkError is a failure with no answer: retryable. Its text is the
// transport's, which names the URL but never the key (the key is only in
// a header); scrub it anyway.
func (c *Client) networkError(err error) *Error {
	msg := "Could not reach the model provider: " + err.Error()
	if errors.Is(err, context.Canceled) {
		msg = "The model call was cancelled."
	} else if errors.Is(err, context.DeadlineExceeded) {
		msg = "The model provider did not answer in time."
	}
	return &Error{Code: "network", Message: c.scrub(msg), Retryable: true, err: err}
}

// statusError reads the provider's error answer.
func (c *Client) statusError(res *http.Response, body []byte) *Error {
	e := &Error{Status: res.StatusCode}
	var w wireError
	if json.Unmarshal(body, &w) == nil && w.Error.Message != "" {
		e.Message = w.Error.Message
		var code string
		if json.Unmarshal(w.Error.Code, &code) == nil && code != "" {
			e.Code = code
		} else {
			e.Code = w.Error.Type
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	switch s := res.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Message = "The provider refused the API key (" + e.Message + ")"
		if e.Code == "" {
			e.Code = "invalid_api_key"
		}
	case s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500:
		e.Retryable = true
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(res.Header.Get("Retry-After"))); err == nil && secs >= 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	e.Message = c.scrub(e.Message)
	e.Code = c.scrub(e.Code)
	return e
}

// maxErrorMessage bounds the provider's text kept in an error.
const maxErrorMessage = 500

// scrub removes the key from a provider's text — a provider may echo what
// it was sent — and keeps it short.
func (c *Client) scrub(s string) string {
	if c.key != "" {
		s = strings.ReplaceAll(s, c.key, "[redacted]")
		// A provider may echo the key cut short; drop any long piece of it.
		if len(c.key) >= 16 {
			for i := 0; i+12 <= len(c.key); i++ {
				if strings.Contains(s, c.key[i:i+12]) {
					s = strings.ReplaceAll(s, c.key[i:i+12], "[redacted]")
				}
			}
		}
	}
	if utf8.RuneCountInString(s) > maxErrorMessage {
		r := []rune(s)
		s = string(r[:maxErrorMessage]) + "…"
	}
	return s
}
