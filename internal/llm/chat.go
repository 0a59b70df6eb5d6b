package llm

import (
	"bytes"
	"encoding/json"
)

// Roles of a message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Request is one chat completion to ask for.
type Request struct {
	// Model is one of the provider's models (ModelPrice.Model).
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	// Tools the model may call; none leaves it to answer in text.
	Tools []Tool `json:"tools,omitempty"`
	// ToolChoice is "", "auto", "none" or "required" ("" leaves the
	// provider's default).
	ToolChoice string `json:"toolChoice,omitempty"`
	// MaxTokens caps the completion; 0 or more than the model's
	// MaxOutputTokens means MaxOutputTokens. Complete always sends it, so
	// the worst case priced before the call holds.
	MaxTokens      int             `json:"maxTokens,omitempty"`
	ResponseFormat *ResponseFormat `json:"responseFormat,omitempty"`
}

// Message is one message of the conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content,omitempty"`
	// ToolCalls are the calls an assistant message made.
	ToolCalls []ToolCall `json:"toolCalls,omitempty"`
	// ToolCallID is the call a tool message answers.
	ToolCallID string `json:"toolCallId,omitempty"`
	Name       string `json:"name,omitempty"`
}

// Tool is a function the model may call.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema of the arguments; empty sends none.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is a call of a tool the model asked for.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arguments is always valid JSON: the arguments as the model wrote
	// them, or, when they were not JSON (Malformed), their text as a JSON
	// string — so a ToolCall can always be stored and sent back.
	Arguments json.RawMessage `json:"arguments"`
	Malformed bool            `json:"malformed,omitempty"`
}

// Response formats.
const (
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// ResponseFormat asks for JSON: any object (FormatJSONObject) or one that
// matches Schema (FormatJSONSchema).
type ResponseFormat struct {
	Type string `json:"type"`
	// Name names the schema (default "response"); Schema is the JSON
	// Schema; Strict asks the provider to hold to it exactly.
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict bool            `json:"strict,omitempty"`
}

// Response is the model's answer.
type Response struct {
	// Model is the model that answered, as the provider named it.
	Model     string     `json:"model"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"toolCalls,omitempty"`
	// FinishReason is the provider's: "stop", "tool_calls", "length", ...
	FinishReason string `json:"finishReason"`
	Usage        Usage  `json:"usage"`
	// Cost is Usage at the model's price.
	Cost Money `json:"costUsd"`
}

// The request and response as OpenAI-compatible endpoints speak them.

type wireMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	Name       string         `json:"name,omitempty"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type wireToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function wireFunction `json:"function"`
}

type wireFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type wireTool struct {
	Type     string           `json:"type"`
	Function wireToolFunction `json:"function"`
}

type wireToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type wireFormat struct {
	Type       string          `json:"type"`
	JSONSchema *wireJSONSchema `json:"json_schema,omitempty"`
}

type wireJSONSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict bool            `json:"strict,omitempty"`
}

type wireRequest struct {
	Model          string          `json:"model"`
	Messages       json.RawMessage `json:"messages"`
	Tools          json.RawMessage `json:"tools,omitempty"`
	ToolChoice     string          `json:"tool_choice,omitempty"`
	MaxTokens      int             `json:"max_tokens"`
	ResponseFormat *wireFormat     `json:"response_format,omitempty"`
}

type wireResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string        `json:"content"`
			ToolCalls []wireToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

type wireError struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

func wireMessages(msgs []Message) []wireMessage {
	out := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		w := wireMessage{Role: m.Role, Name: m.Name, ToolCallID: m.ToolCallID}
		// An assistant message that only calls tools has null content.
		if m.Content != "" || len(m.ToolCalls) == 0 {
			c := m.Content
			w.Content = &c
		}
		for _, c := range m.ToolCalls {
			w.ToolCalls = append(w.ToolCalls, wireToolCall{ID: c.ID, Type: "function",
				Function: wireFunction{Name: c.Name, Arguments: c.argumentsText()}})
		}
		out[i] = w
	}
	return out
}

func wireTools(tools []Tool) []wireTool {
	out := make([]wireTool, len(tools))
	for i, t := range tools {
		out[i] = wireTool{Type: "function", Function: wireToolFunction{Name: t.Name, Description: t.Description, Parameters: t.Parameters}}
	}
	return out
}

// argumentsText is the arguments as the wire carries them: a string of
// JSON, or the model's own malformed text.
func (c ToolCall) argumentsText() string {
	if c.Malformed {
		var s string
		if json.Unmarshal(c.Arguments, &s) == nil {
			return s
		}
	}
	if len(bytes.TrimSpace(c.Arguments)) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, c.Arguments) != nil {
		return string(c.Arguments)
	}
	return buf.String()
}

// toolCallFromWire keeps the model's arguments when they are JSON, and
// their text as a JSON string otherwise.
func toolCallFromWire(w wireToolCall) ToolCall {
	c := ToolCall{ID: w.ID, Name: w.Function.Name}
	args := bytes.TrimSpace([]byte(w.Function.Arguments))
	if len(args) == 0 {
		args = []byte("{}")
	}
	if json.Valid(args) {
		c.Arguments = json.RawMessage(args)
	} else {
		c.Arguments, _ = json.Marshal(w.Function.Arguments)
		c.Malformed = true
	}
	return c
}
