package textcheck

import (
	"net/url"
	"testing"

	"taskjuice/internal/apperr"
)

func TestStorable(t *testing.T) {
	for s, want := range map[string]bool{
		"":             true,
		"Café ☕ 東京":    true,
		"tab\tand\nLF": true,
		"a\x00b":       false,
		"a\xffb":       false,
		"\xc3":         false, // a cut-off two-byte sequence
		"\xed\xa0\x80": false, // an encoded surrogate
	} {
		if got := Storable(s); got != want {
			t.Errorf("Storable(%q): got %v, want %v", s, got, want)
		}
	}
	if !StorableValues(url.Values{"name": {"Ann", "Bob"}}) {
		t.Error("StorableValues refused plain values")
	}
	if StorableValues(url.Values{"name": {"Ann", "B\x00b"}}) || StorableValues(url.Values{"n\xffme": {"Ann"}}) {
		t.Error("StorableValues accepted a NUL value or an invalid name")
	}
}

func TestStorableJSON(t *testing.T) {
	for body, want := range map[string]bool{
		`{"name":"Ann","n":[1,2,{"deep":"ok"}]}`: true,
		`{"name":"a\u0000b"}`:                    false,
		`{"a\u0000":1}`:                          false,
		`["x",["\u0000"]]`:                       false,
		`"\u0000"`:                               false,
		`{"path":"C:\\u0000dir"}`:                true, // a backslash, then the letters u0000
		`{"name":"\u00e9\u2603"}`:                true,
		"{\"name\":\"a\xffb\"}":                  false,
		`{"broken": `:                            true,  // not judged: the reader reports it
		`{"a": "\u0000", "broken": `:             false, // found before the syntax error
	} {
		if got := StorableJSON([]byte(body)); got != want {
			t.Errorf("StorableJSON(%s): got %v, want %v", body, got, want)
		}
	}
}

func TestLine(t *testing.T) {
	for _, s := range []string{"Acme Corp", "Café ☕", "O'Brien & Sons", "Ünïcödé—dash"} {
		if err := Line("name", "A name", s); err != nil {
			t.Errorf("Line(%q): got %v, want nil", s, err)
		}
	}
	for _, s := range []string{"a\tb", "a\nb", "a\rb", "a\x7fb", "a\u0085b", "a\u2028b", "a\u2029b", "Stripe\u202egnp.exe", "a\u2066b", "a\u200fb", "a\x00b", "a\xffb"} {
		err := Line("name", "A name", s)
		e, ok := apperr.As(err)
		if !ok || e.Kind != apperr.KindInvalid || e.Field != "name" {
			t.Errorf("Line(%q): got %v, want an invalid-field error for name", s, err)
		}
	}
}
