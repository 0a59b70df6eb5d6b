package llm_test

import (
	"encoding/json"
	"errors"
	"testing"

	"taskjuice/internal/llm"
)

func TestParseMoney(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want llm.Money
		err  error
	}{
		{"5", 5 * llm.Dollar, nil},
		{"5.00", 5 * llm.Dollar, nil},
		{" $0.15 ", 15 * llm.Cent, nil},
		{"0.000125", 125, nil},
		{".5", llm.Dollar / 2, nil},
		{"12.", 12 * llm.Dollar, nil},
		{"0", 0, nil},
		{"1000000000", llm.MaxMoney, nil},
		{"1000000000.000001", 0, llm.ErrTooLarge},
		{"0.0000001", 0, llm.ErrTooPrecise},
		{"-1", 0, llm.ErrNegativeAmount},
		{"1e3", 0, llm.ErrNotAmount},
		{"", 0, llm.ErrNotAmount},
		{".", 0, llm.ErrNotAmount},
		{"1,000", 0, llm.ErrNotAmount},
		{"ten", 0, llm.ErrNotAmount},
	} {
		got, err := llm.ParseMoney(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("ParseMoney(%q): got %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMoneyFormat(t *testing.T) {
	for _, tc := range []struct {
		m            llm.Money
		str, decimal string
	}{
		{0, "$0.00", "0.00"},
		{5 * llm.Dollar, "$5.00", "5.00"},
		{1_234_567, "$1.23", "1.234567"},
		{4_999_999, "$4.99", "4.999999"},
		{2 * llm.Cent, "$0.02", "0.02"},
		{4200, "$0.0042", "0.0042"},
		{1, "$0.000001", "0.000001"},
		{-150 * llm.Cent, "-$1.50", "-1.50"},
	} {
		if got := tc.m.String(); got != tc.str {
			t.Errorf("%d.String(): got %q, want %q", tc.m, got, tc.str)
		}
		if got := tc.m.Decimal(); got != tc.decimal {
			t.Errorf("%d.Decimal(): got %q, want %q", tc.m, got, tc.decimal)
		}
	}
}

func TestMoneyJSON(t *testing.T) {
	b, err := json.Marshal(struct{ A llm.Money }{2_500_000})
	if err != nil || string(b) != `{"A":"2.50"}` {
		t.Fatalf("marshal: got %s, %v", b, err)
	}
	for in, want := range map[string]llm.Money{`"2.50"`: 2_500_000, `2.5`: 2_500_000, `0.000001`: 1, `"$3"`: 3 * llm.Dollar} {
		var m llm.Money
		if err := json.Unmarshal([]byte(in), &m); err != nil || m != want {
			t.Errorf("unmarshal %s: got %d, %v; want %d", in, m, err, want)
		}
	}
	for _, in := range []string{`true`, `"-1"`, `{}`, `1e9999`} {
		var m llm.Money
		if err := json.Unmarshal([]byte(in), &m); err == nil {
			t.Errorf("unmarshal %s: got %d, want an error", in, m)
		}
	}
	var u struct{ P llm.USD }
	if err := json.Unmarshal([]byte(`{"P": 0.30}`), &u); err != nil || u.P != "0.30" {
		t.Fatalf("USD from a number: got %q, %v; want the number's text", u.P, err)
	}
}

func TestPriceCost(t *testing.T) {
	p := llm.Price{InputPerMTok: 3 * llm.Dollar, OutputPerMTok: 15 * llm.Dollar}
	// 1,000 prompt tokens at $3/M = $0.003; 500 completion at $15/M = $0.0075.
	if got := p.Cost(llm.Usage{PromptTokens: 1000, CompletionTokens: 500}); got != 10_500 {
		t.Fatalf("cost: got %d µ$, want 10500", got)
	}
	// A fraction of a micro-dollar rounds up: costs are never understated.
	if got := (llm.Price{InputPerMTok: 1}).Cost(llm.Usage{PromptTokens: 1}); got != 1 {
		t.Fatalf("tiny cost: got %d, want 1", got)
	}
	if got, want := p.WorstCase(1000, 4096), p.Cost(llm.Usage{PromptTokens: 1000, CompletionTokens: 4096}); got != want {
		t.Fatalf("worst case: got %d, want %d", got, want)
	}
	if got := (llm.Price{}).Cost(llm.Usage{PromptTokens: 1e6, CompletionTokens: 1e6}); got != 0 {
		t.Fatalf("free model: got %d", got)
	}
}

func TestEstimateTokens(t *testing.T) {
	req := llm.Request{Messages: []llm.Message{{Role: "user", Content: "hi"}}}
	// [{"role":"user","content":"hi"}] is 32 characters: 8 tokens.
	if got := llm.EstimateTokens(req); got != 8 {
		t.Fatalf("estimate: got %d, want 8", got)
	}
	req.Tools = tools
	if got := llm.EstimateTokens(req); got <= 8 {
		t.Fatalf("tools must count: got %d", got)
	}
}

func TestKeyHint(t *testing.T) {
	if got := llm.KeyHint("sk-proj-abcdefghijklmnop1234"); got != "sk-…1234" {
		t.Fatalf("hint: got %q", got)
	}
	if got := llm.KeyHint("short-key"); got != "••••" {
		t.Fatalf("short key hint: got %q, want dots only", got)
	}
}
