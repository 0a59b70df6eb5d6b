package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount of US dollars counted in micro-dollars (millionths of
// a dollar). Integers keep sums exact and identical on both databases;
// prices of a fraction of a cent per thousand tokens still fit.
type Money int64

// Units of Money.
const (
	Microdollar Money = 1
	Cent        Money = 10_000
	Dollar      Money = 1_000_000
)

// MaxMoney bounds what ParseMoney accepts (a billion dollars), far from
// int64's limits even after multiplying by token counts.
const MaxMoney = 1_000_000_000 * Dollar

// Dollars returns d whole dollars.
func Dollars(d int64) Money { return Money(d) * Dollar }

// String formats m for people: "$1.23", cut (not rounded) to the cent, so
// that what is shown as spent is never more than was spent. An amount
// under a cent shows its own digits ("$0.0042") rather than "$0.00".
func (m Money) String() string {
	neg := m < 0
	a := m
	if neg {
		a = -a
	}
	var s string
	if a != 0 && a < Cent {
		s = "$" + a.decimal()
	} else {
		s = fmt.Sprintf("$%d.%02d", a/Dollar, (a%Dollar)/Cent)
	}
	if neg {
		return "-" + s
	}
	return s
}

// Decimal is m in dollars, exactly, with at least two decimals: "2.50",
// "0.000123", "-1.00". It is how Money travels in JSON.
func (m Money) Decimal() string {
	if m < 0 {
		return "-" + (-m).decimal()
	}
	return m.decimal()
}

func (m Money) decimal() string {
	frac := strings.TrimRight(fmt.Sprintf("%06d", m%Dollar), "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return strconv.FormatInt(int64(m/Dollar), 10) + "." + frac
}

// Errors of ParseMoney.
var (
	ErrNotAmount      = errors.New("not a dollar amount")
	ErrNegativeAmount = errors.New("negative amount")
	ErrTooPrecise     = errors.New("more than 6 decimal places")
	ErrTooLarge       = errors.New("amount too large")
)

// ParseMoney reads a dollar amount as people and JSON write it: "5",
// "5.00", "$0.15", "0.000125". At most six decimals; never negative; no
// exponent.
func ParseMoney(s string) (Money, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSpace(strings.TrimPrefix(s, "$"))
	if strings.HasPrefix(s, "-") {
		return 0, ErrNegativeAmount
	}
	s = strings.TrimPrefix(s, "+")
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, ErrNotAmount
	}
	if !digits(whole) || !digits(frac) {
		return 0, ErrNotAmount
	}
	whole = strings.TrimLeft(whole, "0")
	frac = strings.TrimRight(frac, "0")
	if len(frac) > 6 {
		return 0, ErrTooPrecise
	}
	if len(whole) > 10 {
		return 0, ErrTooLarge
	}
	var w int64
	if whole != "" {
		w, _ = strconv.ParseInt(whole, 10, 64)
	}
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	m := Money(w)*Dollar + Money(f)
	if m > MaxMoney {
		return 0, ErrTooLarge
	}
	return m, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// MarshalJSON writes m as a decimal string of dollars ("2.50"): exact,
// and safe from the float rounding of JSON numbers in other languages.
func (m Money) MarshalJSON() ([]byte, error) { return json.Marshal(m.Decimal()) }

// UnmarshalJSON reads a decimal string ("2.50") or a JSON number (2.5).
func (m *Money) UnmarshalJSON(b []byte) error {
	var u USD
	if err := u.UnmarshalJSON(b); err != nil {
		return err
	}
	v, err := ParseMoney(string(u))
	if err != nil {
		return fmt.Errorf("llm: money %s: %w", b, err)
	}
	*m = v
	return nil
}

// USD is a dollar amount as a person or a client wrote it, not yet
// checked: the text of a form field, or of a JSON string or number. The
// services parse it with ParseMoney and report a mistake against the field
// it came from.
type USD string

// UnmarshalJSON accepts a JSON string or number, keeping its text.
func (u *USD) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*u = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*u = USD(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("llm: a dollar amount must be a string or a number")
		}
		*u = USD(n.String())
	}
	return nil
}

// AmountProblem explains a ParseMoney error in words for a person.
func AmountProblem(err error) string {
	switch {
	case errors.Is(err, ErrNegativeAmount):
		return "cannot be negative"
	case errors.Is(err, ErrTooPrecise):
		return "can have at most 6 decimal places"
	case errors.Is(err, ErrTooLarge):
		return "is too large"
	}
	return "must be a dollar amount such as 2.50"
}
