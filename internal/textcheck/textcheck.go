// Package textcheck decides which text TaskJuice accepts. PostgreSQL stores
// neither a NUL character nor invalid UTF-8 in a text column (SQLite does),
// so such text is refused where it enters — the HTTP edge, with one
// message — instead of failing deep inside a write on one engine only. Text
// a person types as a single line (a name, a label, an email address) also
// refuses control characters, which only ever arrive by mistake or to
// mislead whoever reads the name later.
package textcheck

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"taskjuice/internal/apperr"
)

// Message is the one explanation of refused text.
const Message = "The request holds text TaskJuice cannot store: a NUL character or bytes that are not valid UTF-8. Check the address, the form fields, the JSON strings and the headers you sent."

// ErrUnstorable is the error for a request carrying such text (400).
var ErrUnstorable = apperr.BadRequest("invalid_text", Message)

// Storable reports whether s can be stored in a text column of either
// database: valid UTF-8 without NUL.
func Storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// StorableValues reports whether every name and value in v is storable.
func StorableValues(v url.Values) bool {
	for k, vs := range v {
		if !Storable(k) {
			return false
		}
		for _, s := range vs {
			if !Storable(s) {
				return false
			}
		}
	}
	return true
}

// StorableJSON reports whether data, read as JSON, holds only storable
// text: the bytes are UTF-8, and no string or key decodes to one holding
// NUL (the escape \u0000 does). Text that is not JSON passes: whoever
// reads it reports the syntax error.
func StorableJSON(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	// Only an escape can produce NUL in a decoded string (a raw NUL is a
	// syntax error), so most bodies need no walk at all.
	if !bytes.Contains(data, []byte(`\u0000`)) {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return true // the end, or a syntax error the reader reports
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
}

// Line checks one line of text a person typed, such as a name or a label:
// it must be storable and hold no control characters (tabs, line breaks,
// and the invisible characters that reorder text for display). what names
// the input in the message ("Name", "Label").
func Line(field, what, s string) error {
	if !Storable(s) {
		return apperr.Invalid(field, what+" holds a NUL character or bytes that are not valid UTF-8")
	}
	if HasControl(s) {
		return apperr.Invalid(field, what+" cannot contain control characters such as tabs or line breaks")
	}
	return nil
}

// HasControl reports whether s holds a control character: C0 and C1
// controls, DEL, line and paragraph separators, and the bidirectional
// formatting characters that let a name display as something it is not.
func HasControl(s string) bool {
	for _, r := range s {
		switch {
		case unicode.IsControl(r), unicode.In(r, unicode.Zl, unicode.Zp):
			return true
		case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f', r == '\u061c':
			return true
		}
	}
	return false
}
