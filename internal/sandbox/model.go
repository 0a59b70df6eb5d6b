package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Models the model endpoint offers. They answer alike; only their limits
// differ.
const (
	ModelSmall = "sandbox-small"
	ModelLarge = "sandbox-large"
)

type modelSpec struct {
	id        string
	context   int // prompt tokens accepted
	maxOutput int // completion tokens at most
}

var modelSpecs = []modelSpec{
	{id: ModelSmall, context: 16384, maxOutput: 4096},
	{id: ModelLarge, context: 131072, maxOutput: 16384},
}

func findModel(id string) (modelSpec, bool) {
	for _, m := range modelSpecs {
		if m.id == id {
			return m, true
		}
	}
	return modelSpec{}, false
}

const (
	// charsPerToken is the sandbox's tokenizer: one token per four
	// characters, rounded up, at least one.
	charsPerToken = 4
	// modelsCreated is the "created" time the model list shows
	// (2025-01-01T00:00:00Z), fixed so that the list never changes.
	modelsCreated = 1735689600
	maxModelBody  = 4 << 20
)

// ModelReply is one scripted answer of the model endpoint: a text, tool
// calls, or both (a real model may say something while calling tools).
type ModelReply struct {
	Content   string          `json:"content,omitempty"`
	ToolCalls []ModelToolCall `json:"tool_calls,omitempty"`
}

// ModelToolCall is one call of a tool in a scripted reply.
type ModelToolCall struct {
	// ID is the call's id; empty generates one.
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Arguments is sent verbatim as the call's arguments string, so that a
	// script can send broken JSON on purpose; empty sends "{}". In the
	// admin API it may be given as a JSON string or as a JSON value.
	Arguments string `json:"arguments,omitempty"`
}

// UnmarshalJSON accepts arguments as a string or as any JSON value (kept
// compacted), and refuses unknown fields.
func (c *ModelToolCall) UnmarshalJSON(b []byte) error {
	var w struct {
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	out := ModelToolCall{ID: w.ID, Name: w.Name}
	switch a := bytes.TrimSpace(w.Arguments); {
	case len(a) == 0 || string(a) == "null":
	case a[0] == '"':
		if err := json.Unmarshal(a, &out.Arguments); err != nil {
			return err
		}
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, a); err != nil {
			return err
		}
		out.Arguments = buf.String()
	}
	*c = out
	return nil
}

// TextReply is a scripted reply that answers with content.
func TextReply(content string) ModelReply { return ModelReply{Content: content} }

// ToolCallReply is a scripted reply that calls one tool with arguments, a
// JSON object as a string.
func ToolCallReply(name, arguments string) ModelReply {
	return ModelReply{ToolCalls: []ModelToolCall{{Name: name, Arguments: arguments}}}
}

// ModelStats count what the model endpoint has seen since the sandbox
// started.
type ModelStats struct {
	// Requests counts every chat-completion request that passed the API
	// key check, whatever became of it: a call refused before it was sent
	// leaves it unchanged.
	Requests int `json:"requests"`
	// Completions counts completions served, Scripted those of them that
	// came from the script.
	Completions int `json:"completions"`
	Scripted    int `json:"scripted"`
	// PromptTokens and CompletionTokens add up the usage of every
	// completion served.
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// Rejected counts authenticated requests answered 4xx (validation,
	// unknown model, context length).
	Rejected int `json:"rejected"`
	// Unauthorized counts /v1 requests refused for a missing or wrong key.
	Unauthorized     int `json:"unauthorized"`
	FailuresInjected int `json:"failures_injected"`
	FailuresPending  int `json:"failures_pending"`
	ScriptPending    int `json:"script_pending"`
}

// ModelKey returns the API key of the model endpoint.
func (p *Provider) ModelKey() string { return p.modelKey }

// ScriptModel queues replies for the model endpoint. Each chat-completion
// request that passes validation takes the next one, in order, instead of
// the default policy. A reply is served as written, even a call of a tool
// the request did not offer or arguments that are not JSON, so that tests
// can drive an agent into its error paths; only max_tokens still applies.
func (p *Provider) ScriptModel(replies ...ModelReply) error {
	queued := make([]ModelReply, 0, len(replies))
	for i, r := range replies {
		if r.Content == "" && len(r.ToolCalls) == 0 {
			return fmt.Errorf("sandbox: scripted reply %d: want content or tool calls", i+1)
		}
		for _, c := range r.ToolCalls {
			if c.Name == "" {
				return fmt.Errorf("sandbox: scripted reply %d: a tool call has no name", i+1)
			}
		}
		r.ToolCalls = slices.Clone(r.ToolCalls)
		queued = append(queued, r)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.modelScript = append(p.modelScript, queued...)
	p.log.Info("sandbox model script queued", "replies", len(queued), "pending", len(p.modelScript))
	return nil
}

// ClearModelScript drops the scripted replies not served yet and says how
// many there were.
func (p *Provider) ClearModelScript() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.modelScript)
	p.modelScript = nil
	return n
}

// FailModelNext makes the next n chat-completion requests that pass the
// API key check fail with kind, before any validation, without using the
// script. For Fault429, retryAfter (rounded up to whole seconds, at least
// 1) goes in the Retry-After header. n <= 0 clears a pending fault.
func (p *Provider) FailModelNext(n int, kind FaultKind, retryAfter time.Duration) error {
	return p.setFault(&p.modelFault, "model", n, kind, retryAfter)
}

func (p *Provider) modelStatsLocked() ModelStats {
	s := p.modelStats
	s.FailuresPending = max(p.modelFault.remaining, 0)
	s.ScriptPending = len(p.modelScript)
	return s
}

// modelError is an answer in OpenAI's error shape.
type modelError struct {
	status  int
	typ     string
	code    string
	param   string
	message string
}

func (e *modelError) write(w http.ResponseWriter) {
	var param, code *string
	if e.param != "" {
		param = &e.param
	}
	if e.code != "" {
		code = &e.code
	}
	writeJSON(w, e.status, map[string]any{"error": map[string]any{
		"message": e.message, "type": e.typ, "param": param, "code": code,
	}})
}

func badRequest(code, param, format string, args ...any) *modelError {
	return &modelError{status: http.StatusBadRequest, typ: "invalid_request_error", code: code, param: param, message: fmt.Sprintf(format, args...)}
}

// modelAuth guards /v1 with the model API key.
func (p *Provider) modelAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, _ := bearer(r)
		if !secretsEqual(p.modelKey, key) {
			p.mu.Lock()
			p.modelStats.Unauthorized++
			p.mu.Unlock()
			e := &modelError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key",
				message: "Incorrect API key provided. Send the sandbox's model key as Authorization: Bearer KEY."}
			if key == "" {
				e.message = "You didn't provide an API key. Send the sandbox's model key as Authorization: Bearer KEY."
			}
			e.write(w)
			return
		}
		h(w, r)
	}
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func modelView(m modelSpec) modelObject {
	return modelObject{ID: m.id, Object: "model", Created: modelsCreated, OwnedBy: "sandbox"}
}

func (p *Provider) handleModels(w http.ResponseWriter, _ *http.Request) {
	data := make([]modelObject, len(modelSpecs))
	for i, m := range modelSpecs {
		data[i] = modelView(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (p *Provider) handleModel(w http.ResponseWriter, r *http.Request) {
	m, ok := findModel(r.PathValue("model"))
	if !ok {
		modelNotFound(r.PathValue("model")).write(w)
		return
	}
	writeJSON(w, http.StatusOK, modelView(m))
}

func modelNotFound(id string) *modelError {
	return &modelError{status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found", param: "model",
		message: fmt.Sprintf("The model `%s` does not exist. The sandbox offers %s and %s.", id, ModelSmall, ModelLarge)}
}

// chatResponse is a chat completion in OpenAI's shape.
type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int              `json:"index"`
	Message      assistantMessage `json:"message"`
	Logprobs     *struct{}        `json:"logprobs"` // always null
	FinishReason string           `json:"finish_reason"`
}

type assistantMessage struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	ToolCalls []toolCallWire `json:"tool_calls,omitempty"`
	Refusal   *string        `json:"refusal"` // always null
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (p *Provider) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.modelStats.Requests++
	f, failing := p.takeModelFaultLocked()
	p.mu.Unlock()
	if failing {
		p.serveModelFault(w, r, f)
		return
	}
	req, e := parseChatRequest(w, r)
	if e != nil {
		p.mu.Lock()
		p.modelStats.Rejected++
		p.mu.Unlock()
		e.write(w)
		return
	}

	p.mu.Lock()
	reply, scripted := ModelReply{}, len(p.modelScript) > 0
	if scripted {
		reply = p.modelScript[0]
		p.modelScript = p.modelScript[1:]
	}
	p.mu.Unlock()
	if !scripted {
		reply = defaultReply(req)
	}

	msg, finish, used := shape(reply, req.maxTokens*charsPerToken)
	usage := chatUsage{PromptTokens: req.promptTokens, CompletionTokens: tokens(used)}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	resp := chatResponse{
		ID: randomID("chatcmpl-", 12), Object: "chat.completion", Created: p.now().Unix(), Model: req.model.id,
		Choices: []chatChoice{{Message: msg, FinishReason: finish}},
		Usage:   usage,
	}

	p.mu.Lock()
	p.modelStats.Completions++
	if scripted {
		p.modelStats.Scripted++
	}
	p.modelStats.PromptTokens += usage.PromptTokens
	p.modelStats.CompletionTokens += usage.CompletionTokens
	p.mu.Unlock()
	p.log.Debug("sandbox model completion", "model", req.model.id, "scripted", scripted, "finish_reason", finish,
		"prompt_tokens", usage.PromptTokens, "completion_tokens", usage.CompletionTokens)
	writeJSON(w, http.StatusOK, resp)
}

// shape turns a reply into the assistant message, cutting it to budget
// characters: content first, then each call's name and arguments. It
// returns the finish reason and the characters used.
func shape(reply ModelReply, budget int) (assistantMessage, string, int) {
	msg := assistantMessage{Role: "assistant"}
	content, cut := clip(reply.Content, budget)
	used := utf8.RuneCountInString(content)
	for _, c := range reply.ToolCalls {
		if cut {
			break
		}
		room := budget - used - utf8.RuneCountInString(c.Name)
		if room < 0 {
			cut = true
			break
		}
		args := c.Arguments
		if args == "" {
			args = "{}"
		}
		args, cut = clip(args, room)
		id := c.ID
		if id == "" {
			id = randomID("call_", 12)
		}
		msg.ToolCalls = append(msg.ToolCalls, toolCallWire{ID: id, Type: "function", Function: functionCallWire{Name: c.Name, Arguments: args}})
		used += utf8.RuneCountInString(c.Name) + utf8.RuneCountInString(args)
	}
	if content != "" || len(msg.ToolCalls) == 0 {
		msg.Content = &content
	}
	switch {
	case cut:
		return msg, "length", used
	case len(msg.ToolCalls) > 0:
		return msg, "tool_calls", used
	default:
		return msg, "stop", used
	}
}

// tokens is the sandbox's token count for n characters.
func tokens(n int) int {
	return max(1, (n+charsPerToken-1)/charsPerToken)
}

// clip cuts s to at most n runes and says whether it cut.
func clip(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	i := 0
	for j := range s {
		if i == max(n, 0) {
			return s[:j], true
		}
		i++
	}
	return s, false
}

func (p *Provider) takeModelFaultLocked() (fault, bool) {
	if p.modelFault.remaining <= 0 {
		return fault{}, false
	}
	p.modelFault.remaining--
	p.modelStats.FailuresInjected++
	return p.modelFault, true
}

func (p *Provider) serveModelFault(w http.ResponseWriter, r *http.Request, f fault) {
	p.log.Info("sandbox injected a model failure", "kind", string(f.kind))
	switch f.kind {
	case Fault429:
		secs := int(math.Ceil(max(f.retryAfter, 0).Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		(&modelError{status: http.StatusTooManyRequests, typ: "requests", code: "rate_limit_exceeded",
			message: "Rate limit reached for requests. Please try again later."}).write(w)
	case FaultTimeout:
		t := time.NewTimer(p.hold)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			// The client gave up; nobody is left to answer.
		case <-t.C:
		case <-p.closed:
		}
		if r.Context().Err() == nil {
			(&modelError{status: http.StatusGatewayTimeout, typ: "server_error", code: "timeout",
				message: "The model did not answer in time."}).write(w)
		}
	default:
		(&modelError{status: http.StatusInternalServerError, typ: "server_error", code: "server_error",
			message: "The server had an error while processing your request."}).write(w)
	}
}

// The request as OpenAI clients send it. Fields the sandbox does not use
// (temperature, top_p, user, seed, ...) are accepted and ignored.
type chatRequestWire struct {
	Model               string          `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Stream              *bool           `json:"stream"`
	N                   *int            `json:"n"`
}

type messageWire struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []toolCallWire  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

type toolCallWire struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function functionCallWire `json:"function"`
}

type functionCallWire struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type toolWire struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type responseFormatWire struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

// chatRequest is a validated request.
type chatRequest struct {
	model     modelSpec
	messages  []chatMessage
	callNames map[string]string // tool call id -> tool name
	tools     []chatTool
	choice    string // "auto", "none", "required" or "function"
	choose    string // the tool tool_choice names
	maxTokens int    // completion tokens allowed
	format    string // "text", "json_object" or "json_schema"
	schema    map[string]any
	// promptTokens counts the compacted JSON of messages and tools.
	promptTokens int
}

type chatMessage struct {
	role       string
	text       string
	toolCallID string
}

type chatTool struct {
	name, description string
	params            map[string]any // nil without parameters
}

var toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func parseChatRequest(w http.ResponseWriter, r *http.Request) (*chatRequest, *modelError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxModelBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &modelError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large",
				message: fmt.Sprintf("The request body is larger than %d bytes.", maxModelBody)}
		}
		return nil, badRequest("invalid_body", "", "The request body could not be read.")
	}
	var wire chatRequestWire
	if err := json.Unmarshal(body, &wire); err != nil {
		return nil, badRequest("invalid_json", "", "The body is not a valid chat completion request: %v.", err)
	}
	if wire.Model == "" {
		return nil, badRequest("missing_required_parameter", "model", "You must provide a model parameter.")
	}
	spec, ok := findModel(wire.Model)
	if !ok {
		return nil, modelNotFound(wire.Model)
	}
	req := &chatRequest{model: spec, maxTokens: spec.maxOutput, format: "text"}
	if wire.Stream != nil && *wire.Stream {
		return nil, badRequest("unsupported_value", "stream", "The sandbox model does not stream: leave stream unset or false.")
	}
	if wire.N != nil && *wire.N != 1 {
		return nil, badRequest("unsupported_value", "n", "The sandbox model answers one choice: n must be 1.")
	}
	if e := req.parseMessages(wire.Messages); e != nil {
		return nil, e
	}
	if e := req.parseTools(wire.Tools); e != nil {
		return nil, e
	}
	if e := req.parseToolChoice(wire.ToolChoice); e != nil {
		return nil, e
	}
	for _, lim := range []struct {
		name string
		v    *int
	}{{"max_tokens", wire.MaxTokens}, {"max_completion_tokens", wire.MaxCompletionTokens}} {
		switch {
		case lim.v == nil:
		case *lim.v < 1:
			return nil, badRequest("invalid_value", lim.name, "%s must be at least 1.", lim.name)
		case *lim.v > spec.maxOutput:
			return nil, badRequest("invalid_value", lim.name, "%s is too large: %d. %s supports at most %d completion tokens.", lim.name, *lim.v, spec.id, spec.maxOutput)
		default:
			req.maxTokens = min(req.maxTokens, *lim.v)
		}
	}
	if e := req.parseResponseFormat(wire.ResponseFormat); e != nil {
		return nil, e
	}

	var buf bytes.Buffer
	_ = json.Compact(&buf, wire.Messages) // both were decoded above
	if len(req.tools) > 0 {
		_ = json.Compact(&buf, wire.Tools)
	}
	req.promptTokens = tokens(utf8.RuneCount(buf.Bytes()))
	if req.promptTokens > spec.context {
		return nil, badRequest("context_length_exceeded", "messages", "This model's maximum context length is %d tokens. However, your messages resulted in %d tokens.", spec.context, req.promptTokens)
	}
	return req, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func (req *chatRequest) parseMessages(raw json.RawMessage) *modelError {
	if isNull(raw) {
		return badRequest("missing_required_parameter", "messages", "You must provide messages.")
	}
	var msgs []messageWire
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return badRequest("invalid_type", "messages", "messages must be an array of message objects: %v.", err)
	}
	if len(msgs) == 0 {
		return badRequest("invalid_value", "messages", "messages must not be empty.")
	}
	req.callNames = map[string]string{}
	var open []string // tool calls still waiting for their result
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		text, has, problem := contentText(m.Content)
		if problem != "" {
			return badRequest("invalid_type", param+".content", "%s", problem)
		}
		if len(open) > 0 && m.Role != "tool" {
			return badRequest("invalid_value", param+".role", "An assistant message with tool_calls must be followed by tool messages answering each tool_call_id; %s has none.", open[0])
		}
		if m.Role != "assistant" && len(m.ToolCalls) > 0 {
			return badRequest("invalid_value", param+".tool_calls", "Only assistant messages may carry tool_calls.")
		}
		if m.Role != "tool" && m.ToolCallID != "" {
			return badRequest("invalid_value", param+".tool_call_id", "Only tool messages may carry tool_call_id.")
		}
		switch m.Role {
		case "system", "developer", "user":
			if !has {
				return badRequest("missing_required_parameter", param+".content", "A %s message needs content.", m.Role)
			}
		case "assistant":
			if !has && len(m.ToolCalls) == 0 {
				return badRequest("missing_required_parameter", param+".content", "An assistant message needs content or tool_calls.")
			}
			for j, c := range m.ToolCalls {
				cp := fmt.Sprintf("%s.tool_calls[%d]", param, j)
				switch {
				case c.ID == "":
					return badRequest("missing_required_parameter", cp+".id", "A tool call needs an id.")
				case c.Type != "function":
					return badRequest("invalid_value", cp+".type", "A tool call's type must be \"function\".")
				case c.Function.Name == "":
					return badRequest("missing_required_parameter", cp+".function.name", "A tool call needs a function name.")
				case req.callNames[c.ID] != "":
					return badRequest("invalid_value", cp+".id", "The tool call id %q is used twice.", c.ID)
				}
				req.callNames[c.ID] = c.Function.Name
				open = append(open, c.ID)
			}
		case "tool":
			if m.ToolCallID == "" {
				return badRequest("missing_required_parameter", param+".tool_call_id", "A tool message needs the tool_call_id it answers.")
			}
			k := slices.Index(open, m.ToolCallID)
			if k < 0 {
				return badRequest("invalid_value", param+".tool_call_id", "Messages with role tool must answer a tool call of the assistant message just before them; %q is not one.", m.ToolCallID)
			}
			open = slices.Delete(open, k, k+1)
			if !has {
				return badRequest("missing_required_parameter", param+".content", "A tool message needs content.")
			}
		case "":
			return badRequest("missing_required_parameter", param+".role", "A message needs a role.")
		default:
			return badRequest("invalid_value", param+".role", "Unknown role %q: want system, developer, user, assistant or tool.", m.Role)
		}
		req.messages = append(req.messages, chatMessage{role: m.Role, text: text, toolCallID: m.ToolCallID})
	}
	if len(open) > 0 {
		return badRequest("invalid_value", "messages", "An assistant message with tool_calls must be followed by tool messages answering each tool_call_id; %s has none.", open[0])
	}
	return nil
}

// contentText reads a message's content: a string, an array of text parts
// or null. It says whether there was content, or what is wrong with it.
func contentText(raw json.RawMessage) (string, bool, string) {
	if isNull(raw) {
		return "", false, ""
	}
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, "content is not a valid string."
		}
		return s, true, ""
	case '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", false, "content must be a string or an array of content parts."
		}
		texts := make([]string, 0, len(parts))
		for _, part := range parts {
			if part.Type != "text" || part.Text == nil {
				return "", false, fmt.Sprintf("The sandbox model reads text parts only (type \"text\" with a text); got type %q.", part.Type)
			}
			texts = append(texts, *part.Text)
		}
		return strings.Join(texts, "\n"), true, ""
	}
	return "", false, "content must be a string, an array of content parts or null."
}

func (req *chatRequest) parseTools(raw json.RawMessage) *modelError {
	if isNull(raw) {
		return nil
	}
	var tools []toolWire
	if err := json.Unmarshal(raw, &tools); err != nil {
		return badRequest("invalid_type", "tools", "tools must be an array of tool objects: %v.", err)
	}
	if len(tools) == 0 {
		return badRequest("invalid_value", "tools", "tools must not be an empty array: leave it out instead.")
	}
	for i, t := range tools {
		param := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return badRequest("invalid_value", param+".type", "A tool's type must be \"function\".")
		}
		if t.Function == nil {
			return badRequest("missing_required_parameter", param+".function", "A tool needs a function.")
		}
		if !toolNameRE.MatchString(t.Function.Name) {
			return badRequest("invalid_value", param+".function.name", "A function name must be 1 to 64 letters, digits, underscores or dashes; got %q.", t.Function.Name)
		}
		if slices.ContainsFunc(req.tools, func(o chatTool) bool { return o.name == t.Function.Name }) {
			return badRequest("invalid_value", param+".function.name", "Two tools are named %q.", t.Function.Name)
		}
		ct := chatTool{name: t.Function.Name, description: t.Function.Description}
		if !isNull(t.Function.Parameters) {
			if err := json.Unmarshal(t.Function.Parameters, &ct.params); err != nil {
				return badRequest("invalid_type", param+".function.parameters", "parameters must be a JSON Schema object.")
			}
		}
		req.tools = append(req.tools, ct)
	}
	return nil
}

func (req *chatRequest) parseToolChoice(raw json.RawMessage) *modelError {
	req.choice = "none"
	if len(req.tools) > 0 {
		req.choice = "auto"
	}
	if isNull(raw) {
		return nil
	}
	if len(req.tools) == 0 {
		return badRequest("invalid_value", "tool_choice", "tool_choice is only allowed when tools are given.")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s != "none" && s != "auto" && s != "required" {
			return badRequest("invalid_value", "tool_choice", "tool_choice must be none, auto, required or a function; got %q.", s)
		}
		req.choice = s
		return nil
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" {
		return badRequest("invalid_value", "tool_choice", `tool_choice must be none, auto, required or {"type":"function","function":{"name":...}}.`)
	}
	if !slices.ContainsFunc(req.tools, func(t chatTool) bool { return t.name == named.Function.Name }) {
		return badRequest("invalid_value", "tool_choice", "tool_choice names %q, which is not among the tools.", named.Function.Name)
	}
	req.choice, req.choose = "function", named.Function.Name
	return nil
}

func (req *chatRequest) parseResponseFormat(raw json.RawMessage) *modelError {
	if isNull(raw) {
		return nil
	}
	var rf responseFormatWire
	if err := json.Unmarshal(raw, &rf); err != nil {
		return badRequest("invalid_type", "response_format", "response_format must be an object with a type.")
	}
	switch rf.Type {
	case "text", "json_object":
	case "json_schema":
		if rf.JSONSchema == nil || !toolNameRE.MatchString(rf.JSONSchema.Name) {
			return badRequest("invalid_value", "response_format.json_schema.name", "A json_schema response format needs json_schema.name: 1 to 64 letters, digits, underscores or dashes.")
		}
		req.schema = map[string]any{}
		if !isNull(rf.JSONSchema.Schema) {
			if err := json.Unmarshal(rf.JSONSchema.Schema, &req.schema); err != nil {
				return badRequest("invalid_type", "response_format.json_schema.schema", "json_schema.schema must be a JSON Schema object.")
			}
		}
	default:
		return badRequest("invalid_value", "response_format.type", "response_format.type must be text, json_object or json_schema; got %q.", rf.Type)
	}
	req.format = rf.Type
	return nil
}

// Admin routes of the model endpoint.

type modelScriptRequest struct {
	Replies []ModelReply `json:"replies"`
}

type modelScriptResponse struct {
	Pending int `json:"pending"`
	Cleared int `json:"cleared"`
}

func (p *Provider) handleAdminModelScript(w http.ResponseWriter, r *http.Request) {
	var req modelScriptRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	if err := p.ScriptModel(req.Replies...); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "sandbox: ")+".")
		return
	}
	writeJSON(w, http.StatusOK, modelScriptResponse{Pending: p.Stats().Model.ScriptPending})
}

func (p *Provider) handleAdminModelClear(w http.ResponseWriter, _ *http.Request) {
	n := p.ClearModelScript()
	writeJSON(w, http.StatusOK, modelScriptResponse{Pending: p.Stats().Model.ScriptPending, Cleared: n})
}

func (p *Provider) handleAdminModelFail(w http.ResponseWriter, r *http.Request) {
	var req failRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	if req.Count < 0 || req.RetryAfterSeconds < 0 {
		apiError(w, http.StatusBadRequest, "invalid_request", "count and retry_after_seconds cannot be negative.")
		return
	}
	if err := p.FailModelNext(req.Count, req.Kind, time.Duration(req.RetryAfterSeconds)*time.Second); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "kind must be 500, 429 or timeout.")
		return
	}
	writeJSON(w, http.StatusOK, p.Stats())
}

// ScriptModel queues scripted replies for the model endpoint and returns
// how many are pending.
func (c *AdminClient) ScriptModel(ctx context.Context, replies ...ModelReply) (int, error) {
	var out modelScriptResponse
	err := c.do(ctx, http.MethodPost, "/admin/model/script", modelScriptRequest{Replies: replies}, &out)
	return out.Pending, err
}

// ClearModelScript drops the scripted replies not served yet and says how
// many there were.
func (c *AdminClient) ClearModelScript(ctx context.Context) (int, error) {
	var out modelScriptResponse
	err := c.do(ctx, http.MethodDelete, "/admin/model/script", nil, &out)
	return out.Cleared, err
}

// FailModelNext makes the next n chat-completion requests fail with kind;
// retryAfter is sent in whole seconds.
func (c *AdminClient) FailModelNext(ctx context.Context, n int, kind FaultKind, retryAfter time.Duration) error {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	return c.do(ctx, http.MethodPost, "/admin/model/fail", failRequest{Count: n, Kind: kind, RetryAfterSeconds: secs}, nil)
}
