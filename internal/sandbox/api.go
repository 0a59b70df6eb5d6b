package sandbox

import (
	"encoding/json"
	"fmt"
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

// handleListMessages lists a channel's messages, oldest first. Without
// "after" it answers the last "limit" messages. With "after" (a message id,
// or empty for the channel's start) it answers up to "limit" messages
// posted after it, in the order they were posted, with "has_more" and
// "next_cursor" (the id of the last message answered, to pass as "after"
// next): a reader that keeps its cursor sees every message once.
func (p *Provider) handleListMessages(w http.ResponseWriter, r *http.Request, c caller) {
	ch, ok := channel(w, r, c)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiError(w, http.StatusBadRequest, "invalid_limit", "limit must be a number from 1 to 1000.")
			return
		}
		limit = n
	}
	p.mu.Lock()
	all := p.st.Messages[ch.ID]
	var page []*Message
	hasMore := false
	if q.Has("after") {
		start := 0
		if after := q.Get("after"); after != "" {
			i := slices.IndexFunc(all, func(m *Message) bool { return m.ID == after })
			if i < 0 {
				p.mu.Unlock()
				apiError(w, http.StatusBadRequest, "invalid_cursor", "No message “"+after+"” in this channel to read after.")
				return
			}
			start = i + 1
		}
		end := min(start+limit, len(all))
		page, hasMore = all[start:end], end < len(all)
	} else {
		page = all[max(len(all)-limit, 0):]
	}
	msgs := make([]Message, 0, len(page))
	for _, m := range page {
		msgs = append(msgs, *m)
	}
	p.mu.Unlock()
	out := map[string]any{"channel": ch, "messages": msgs, "has_more": hasMore}
	if len(msgs) > 0 {
		out["next_cursor"] = msgs[len(msgs)-1].ID
	} else {
		out["next_cursor"] = q.Get("after")
	}
	writeJSON(w, http.StatusOK, out)
}

// Post adds a message to a channel (an id or a name) of the sandbox account
// with this name (or id), as a person in the chat would: the way tests and
// demos make a polling trigger fire.
func (p *Provider) Post(account, channelName, text string) (Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.findAccountLocked(account)
	if a == nil {
		return Message{}, fmt.Errorf("account %q: %w", account, ErrNotFound)
	}
	want := strings.TrimPrefix(channelName, "#")
	i := slices.IndexFunc(a.Channels, func(ch Channel) bool { return ch.ID == want || strings.EqualFold(ch.Name, want) })
	if i < 0 {
		return Message{}, fmt.Errorf("channel %q: %w", channelName, ErrNotFound)
	}
	m := &Message{ID: randomID("M", 8), ChannelID: a.Channels[i].ID, Text: text, App: "Sandbox", Created: p.now()}
	p.st.Messages[m.ChannelID] = append(p.st.Messages[m.ChannelID], m)
	p.publishedLocked(a.ID, a.Channels[i], *m)
	p.stats.MessagesPosted++
	return *m, p.saveLocked()
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
	p.publishedLocked(c.account.ID, ch, *m)
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
