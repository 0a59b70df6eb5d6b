package llm

import (
	"encoding/json"
	"unicode/utf8"
)

// Price is what a model costs: Money per million tokens, read (prompt) and
// written (completion).
type Price struct {
	InputPerMTok  Money `json:"inputUsdPerMTok"`
	OutputPerMTok Money `json:"outputUsdPerMTok"`
}

// ModelPrice is one model a provider offers, its price, and the most
// completion tokens a call to it may ask for — the bound that makes a
// call's worst-case cost finite.
type ModelPrice struct {
	Model string `json:"model"`
	Price
	MaxOutputTokens int `json:"maxOutputTokens"`
}

// Usage is the tokens a call used, as the provider reported them.
type Usage struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
}

// perMillion is tokens × price / 1,000,000, rounded up to the
// micro-dollar: costs are never understated.
func perMillion(tokens int, price Money) Money {
	if tokens <= 0 || price <= 0 {
		return 0
	}
	n := Money(tokens) * price
	return (n + 999_999) / 1_000_000
}

// Cost is what a call with usage u costs.
func (p Price) Cost(u Usage) Money {
	return perMillion(u.PromptTokens, p.InputPerMTok) + perMillion(u.CompletionTokens, p.OutputPerMTok)
}

// WorstCase is the most a call can cost: promptTokens read and maxTokens
// written. With promptTokens from EstimateTokens and maxTokens the call's
// max_tokens it is at least Cost of the call's usage.
func (p Price) WorstCase(promptTokens, maxTokens int) Money {
	return p.Cost(Usage{PromptTokens: promptTokens, CompletionTokens: maxTokens})
}

// charsPerToken is the tokenizer EstimateTokens assumes. It is the one the
// sandbox's model endpoint bills with (one token per four characters of
// the compacted JSON of messages and tools, rounded up, at least one), so
// against the sandbox the estimate is exact and the worst case a true
// upper bound. Real providers tokenize otherwise; for them it is an
// estimate, and Settle records what they actually billed.
const charsPerToken = 4

// EstimateTokens estimates the prompt tokens of req: one per four
// characters of the JSON of its messages and tools as Complete sends them.
func EstimateTokens(req Request) int {
	msgs, tools, err := encodePrompt(req)
	if err != nil {
		// Only a tool's parameters can fail to encode, and Complete
		// refuses such a request before sending it.
		return 1
	}
	n := utf8.RuneCount(msgs)
	if tools != nil {
		n += utf8.RuneCount(tools)
	}
	return max(1, (n+charsPerToken-1)/charsPerToken)
}

// encodePrompt is the compact JSON of the request's messages and of its
// tools (nil without tools), exactly as they go on the wire.
func encodePrompt(req Request) (msgs, tools []byte, err error) {
	msgs, err = json.Marshal(wireMessages(req.Messages))
	if err != nil {
		return nil, nil, err
	}
	if len(req.Tools) > 0 {
		if tools, err = json.Marshal(wireTools(req.Tools)); err != nil {
			return nil, nil, err
		}
	}
	return msgs, tools, nil
}
