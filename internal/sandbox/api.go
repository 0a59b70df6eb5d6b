package sandbox

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Channel is a chat channel of a sandbox account.
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Message is a message posted in a channel.
type Message struct {
	ID        string    `json:"id"`
	ChannelID string    `json:"channel"`
	Text      string    `json:"text"`
	App       string    `json:"app"` // the client that posted it
	Created   time.Time `json:"ts"`
}

const (
	maxMessageRunes  = 4000
	maxMessageBody   = 16 << 10
	maxIdemKeyLength = 255
	defaultListLimit = 100
)

// caller is who an API request acts for.
type caller struct {
	grant   grantRec
	account account
	client  Client
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

// api wraps a handler with bearer-token authentication and, if scope is
// set, a scope check (RFC 6750).
func (p *Provider) api(scope string, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		var t *tokenRec
		var c caller
		if ok {
			var g *grantRec
			t, g = p.accessToken(token)
			if t != nil {
				p.mu.Lock()
				c = caller{grant: *g, account: *p.st.Accounts[g.AccountID], client: p.clients[g.ClientID]}
				p.mu.Unlock()
			}
		}
		if t == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sandbox Chat", error="invalid_token"`)
			apiError(w, http.StatusUnauthorized, "invalid_token", "The access token is missing, unknown, expired or revoked.")
			return
		}
		if scope != "" && !slices.Contains(strings.Fields(t.Scope), scope) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sandbox Chat", error="insufficient_scope", scope="`+scope+`"`)
			apiError(w, http.StatusForbidden, "insufficient_scope", "This token lacks the "+scope+" scope.")
			return
		}
		h(w, r, c)
	}
}

func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func (p *Provider) handleMe(w http.ResponseWriter, _ *http.Request, c caller) {
	writeJSON(w, http.StatusOK, map[string]any{
		"account": map[string]string{"id": c.account.ID, "name": c.account.Name},
		"app":     map[string]string{"id": c.client.ID, "name": c.client.Name},
		"scopes":  c.grant.Scopes,
	})
}

func (p *Provider) handleChannels(w http.ResponseWriter, _ *http.Request, c caller) {
	writeJSON(w, http.StatusOK, map[string]any{"channels": c.account.Channels})
}

// channel finds the {channel} path value, an id or a name (with or
// without #), among the caller's channels.
func channel(w http.ResponseWriter, r *http.Request, c caller) (Channel, bool) {
	want := strings.TrimPrefix(r.PathValue("channel"), "#")
	for _, ch := range c.account.Channels {
		if ch.ID == want || strings.EqualFold(ch.Name, want) {
			return ch, true
		}
	}
	apiError(w, http.StatusNotFound, "channel_not_found", "No channel “"+want+"” in this workspace.")
	return Channel{}, false
}

func (p *Provider) handleListMessages(w http.ResponseWriter, r *http.Request, c caller) {
	ch, ok := channel(w, r, c)
	if !ok {
		return
	}
	limit := defaultListLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiError(w, http.StatusBadRequest, "invalid_limit", "limit must be a number from 1 to 1000.")
			return
		}
		limit = n
	}
	p.mu.Lock()
	all := p.st.Messages[ch.ID]
	msgs := make([]Message, 0, min(len(all), limit))
	for _, m := range all[max(len(all)-limit, 0):] {
		msgs = append(msgs, *m)
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"channel": ch, "messages": msgs})
}

func (p *Provider) handlePostMessage(w http.ResponseWriter, r *http.Request, c caller) {
	ch, ok := channel(w, r, c)
	if !ok {
		return
	}
	var body struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMessageBody))
	if err := dec.Decode(&body); err != nil || dec.More() {
		apiError(w, http.StatusBadRequest, "invalid_json", `The body must be a JSON object like {"text": "Hello"}.`)
		return
	}
	text := strings.TrimSpace(body.Text)
	switch {
	case text == "":
		apiError(w, http.StatusBadRequest, "text_required", "The message text is empty.")
		return
	case utf8.RuneCountInString(text) > maxMessageRunes:
		apiError(w, http.StatusBadRequest, "text_too_long", "The message text is longer than 4000 characters.")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdemKeyLength {
		apiError(w, http.StatusBadRequest, "invalid_idempotency_key", "The Idempotency-Key header is longer than 255 characters.")
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	idemKey := c.account.ID + "\x00" + key
	if key != "" {
		if rec, seen := p.st.Idem[idemKey]; seen {
			if rec.ChannelID != ch.ID || rec.Text != text {
				apiError(w, http.StatusConflict, "idempotency_key_reused", "This Idempotency-Key was already used for a different message.")
				return
			}
			for _, m := range p.st.Messages[ch.ID] {
				if m.ID == rec.MessageID {
					w.Header().Set("Idempotent-Replayed", "true")
					writeJSON(w, http.StatusOK, map[string]any{"message": *m})
					return
				}
			}
		}
	}
	now := p.now()
	m := &Message{ID: randomID("M", 8), ChannelID: ch.ID, Text: text, App: c.client.Name, Created: now}
	p.st.Messages[ch.ID] = append(p.st.Messages[ch.ID], m)
	if key != "" {
		p.st.Idem[idemKey] = idemRec{AccountID: c.account.ID, ChannelID: ch.ID, Text: text, MessageID: m.ID, Created: now}
	}
	p.stats.MessagesPosted++
	if err := p.saveLocked(); err != nil {
		p.log.Error("sandbox post message", "err", err)
		apiError(w, http.StatusInternalServerError, "internal_error", "The message could not be saved.")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"message": *m})
}
