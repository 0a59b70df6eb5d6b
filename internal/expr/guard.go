package expr

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text wrapped around every function body: BODY becomes
// ($enter(); $r := (BODY); $leave(); $r), which has the value of BODY.
const (
	guardOpen  = "($" + enterName + "(); $" + resultName + " := ("
	guardClose = "); $" + leaveName + "(); $" + resultName + ")"
)

// guardSource wraps the body of every function definition in src and
// returns the new source with the number of bodies wrapped. It is a light
// scanner, not a parser: Compile parses its output and checks that every
// function was guarded and nothing else changed, and refuses the expression
// otherwise.
func guardSource(src string) (string, int) {
	type edit struct {
		at   int
		text string
	}
	var (
		edits []edit
		// braces records, for each open '{', whether it opens a function body.
		braces []bool
		// operand is true after a token that ends an operand, where a '/'
		// divides; elsewhere it starts a regular expression.
		operand bool
	)
	i := 0
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		switch {
		case unicode.IsSpace(r):
			i += size
			continue
		case r == '"' || r == '\'':
			i = skipQuoted(src, i, r, true)
			operand = true
		case r == '`':
			i = skipQuoted(src, i, r, false)
			operand = true
		case r == '/' && !operand:
			end, ok := skipRegex(src, i)
			if !ok {
				end = len(src)
			}
			i = end
			operand = true
		case r == '{':
			braces = append(braces, false)
			i += size
			operand = false
		case r == '}':
			if n := len(braces); n > 0 {
				if braces[n-1] {
					edits = append(edits, edit{i, guardClose})
				}
				braces = braces[:n-1]
			}
			i += size
			operand = true
		case r == '$' || isNameRune(r):
			start := i
			i += size
			for i < len(src) {
				r2, s2 := utf8.DecodeRuneInString(src[i:])
				if !isNameRune(r2) {
					break
				}
				i += s2
			}
			word := src[start:i]
			if word == "function" || word == "λ" {
				if body, ok := lambdaBody(src, i); ok {
					edits = append(edits, edit{body + 1, guardOpen})
					braces = append(braces, true)
					i = body + 1
					operand = false
					continue
				}
			}
			operand = !isKeywordOperator(word)
		case r == ')' || r == ']':
			i += size
			operand = true
		default:
			i += size
			operand = false
		}
	}
	var b strings.Builder
	b.Grow(len(src) + len(edits)*len(guardOpen))
	last := 0
	for _, e := range edits {
		b.WriteString(src[last:e.at])
		b.WriteString(e.text)
		last = e.at
	}
	b.WriteString(src[last:])
	return b.String(), len(edits) / 2
}

// lambdaBody finds the '{' that opens a function body after the keyword
// ending at i: a parameter list in parentheses, an optional signature in
// angle brackets, then the body.
func lambdaBody(src string, i int) (int, bool) {
	i = skipSpace(src, i)
	if i >= len(src) || src[i] != '(' {
		return 0, false
	}
	end := strings.IndexByte(src[i:], ')')
	if end < 0 {
		return 0, false
	}
	i = skipSpace(src, i+end+1)
	if i < len(src) && src[i] == '<' {
		depth := 0
		for ; i < len(src); i++ {
			if src[i] == '<' {
				depth++
			} else if src[i] == '>' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if i >= len(src) {
			return 0, false
		}
		i = skipSpace(src, i+1)
	}
	if i >= len(src) || src[i] != '{' {
		return 0, false
	}
	return i, true
}

func skipSpace(src string, i int) int {
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	return i
}

// skipQuoted returns the index just past the literal that opens at i with
// delim.
func skipQuoted(src string, i int, delim rune, escapes bool) int {
	i++
	for i < len(src) {
		switch {
		case escapes && src[i] == '\\':
			i += 2
		case rune(src[i]) == delim:
			return i + 1
		default:
			i++
		}
	}
	return len(src)
}

func isNameRune(r rune) bool {
	return r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// isKeywordOperator reports words after which an operand is expected.
func isKeywordOperator(w string) bool {
	switch w {
	case "and", "or", "in":
		return true
	}
	return false
}

// stallingSignature reports whether src holds a function signature on which
// the library's parser would never return. The parser reads a signature
// token by token up to '{' or the closing '>', and a '!' or '~' that does
// not begin "!=" or "~>" makes its lexer return an empty token without
// moving on. A signature's '<' follows the ')' of the parameter list, so
// each such '<' is scanned the way the parser's loop would read it.
func stallingSignature(src string) bool {
	for i := 0; i < len(src); i++ {
		if src[i] != '<' || !afterParen(src, i) {
			continue
		}
		if stalls(src, i+1) {
			return true
		}
	}
	return false
}

// afterParen reports whether the token before src[i] is ')'.
func afterParen(src string, i int) bool {
	for i--; i >= 0; i-- {
		switch src[i] {
		case ' ', '\t', '\n', '\r', '\v':
			continue
		case ')':
			return true
		}
		return false
	}
	return false
}

// stalls scans a signature that starts at i, as the parser reads it with
// regular expressions allowed, and reports a token the lexer cannot pass.
func stalls(src string, i int) bool {
	depth := 1
	for i < len(src) {
		c := src[i]
		var next byte
		if i+1 < len(src) {
			next = src[i+1]
		}
		switch c {
		case ' ', '\t', '\n', '\r', '\v':
			i++
		case '{':
			return false
		case '!':
			if next != '=' {
				return true
			}
			i += 2
		case '~':
			if next != '>' {
				return true
			}
			i += 2
		case '<', '>':
			if next == '=' {
				i += 2
				continue
			}
			if c == '<' {
				depth++
			} else if depth--; depth == 0 {
				return false
			}
			i++
		case '"', '\'':
			i = skipQuoted(src, i, rune(c), true)
		case '`':
			i = skipQuoted(src, i, '`', false)
		case '/':
			end, ok := skipRegex(src, i)
			if !ok {
				return false // the lexer reports an unterminated expression
			}
			i = end
		default:
			i++
		}
	}
	return false
}

// skipRegex returns the index just past the regular expression that opens
// at i, following the library's lexer: brackets nest, and a newline or the
// end of the text leaves it unterminated.
func skipRegex(src string, i int) (int, bool) {
	depth := 0
	for i++; i < len(src); i++ {
		switch src[i] {
		case '/':
			if depth == 0 {
				i++
				for i < len(src) && strings.IndexByte("gimsuy", src[i]) >= 0 {
					i++
				}
				return i, true
			}
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '\\':
			i++
			if i >= len(src) || src[i] == '\n' {
				return 0, false
			}
		case '\n':
			return 0, false
		}
	}
	return 0, false
}
