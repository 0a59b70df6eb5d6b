package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Webhook subscriptions: Sandbox Chat's push side. A client registers a
// URL (optionally for one channel) through the API; every message posted
// in the account's channels is then delivered to it as a signed
// "message.created" event, and a delivery answered with anything but 2xx
// (or not answered) is retried with backoff. Subscriptions are kept in the
// state file; deliveries waiting for a retry live in memory.

// Subscription is a registered webhook URL. Its secret is shown once, when
// it is created.
type Subscription struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account_id"`
	ClientID  string    `json:"client_id"`
	URL       string    `json:"url"`
	Channel   string    `json:"channel,omitempty"` // a channel id; empty: every channel
	Secret    string    `json:"secret"`
	Created   time.Time `json:"created"`
}

// webhookView is a subscription as the API shows it: never its secret.
type webhookView struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Channel string    `json:"channel,omitempty"`
	Created time.Time `json:"created"`
}

func (s Subscription) view() webhookView {
	return webhookView{ID: s.ID, URL: s.URL, Channel: s.Channel, Created: s.Created}
}

// Event is what a delivery carries.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created int64  `json:"created"`
	Data    struct {
		Channel Channel `json:"channel"`
		Message Message `json:"message"`
	} `json:"data"`
}

// SignatureHeader carries a delivery's signature: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<t>.<body>" under the subscription's secret>".
const SignatureHeader = "Sandbox-Signature"

// deliveryAttempts is how often a delivery is tried before it is dropped.
const deliveryAttempts = 8

type delivery struct {
	sub     Subscription
	body    []byte
	eventID string
	attempt int
	due     time.Time
}

// subscriptionsStore is the state file's part for webhooks.
type subscriptionsStore = map[string]*Subscription

func (p *Provider) handleCreateWebhook(w http.ResponseWriter, r *http.Request, c caller) {
	var body struct {
		URL     string `json:"url"`
		Channel string `json:"channel"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMessageBody))
	if err := dec.Decode(&body); err != nil || dec.More() {
		apiError(w, http.StatusBadRequest, "invalid_json", `The body must be a JSON object like {"url": "https://example.com/hook", "channel": "general"}.`)
		return
	}
	u, err := url.Parse(strings.TrimSpace(body.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		apiError(w, http.StatusBadRequest, "invalid_url", "url must be an absolute http(s) URL.")
		return
	}
	sub := Subscription{ID: randomID("WH", 10), AccountID: c.account.ID, ClientID: c.client.ID, URL: u.String(), Secret: randomToken("whsec_"), Created: p.now()}
	if name := strings.TrimPrefix(strings.TrimSpace(body.Channel), "#"); name != "" {
		i := slices.IndexFunc(c.account.Channels, func(ch Channel) bool { return ch.ID == name || strings.EqualFold(ch.Name, name) })
		if i < 0 {
			apiError(w, http.StatusNotFound, "channel_not_found", "No channel “"+name+"” in this account.")
			return
		}
		sub.Channel = c.account.Channels[i].ID
	}
	p.mu.Lock()
	p.st.Webhooks[sub.ID] = &sub
	err = p.saveLocked()
	p.mu.Unlock()
	if err != nil {
		p.log.Error("sandbox create webhook", "err", err)
		apiError(w, http.StatusInternalServerError, "internal_error", "The webhook could not be saved.")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"webhook": sub.view(), "secret": sub.Secret})
}

func (p *Provider) handleListWebhooks(w http.ResponseWriter, _ *http.Request, c caller) {
	p.mu.Lock()
	out := []webhookView{}
	for _, s := range p.st.Webhooks {
		if s.AccountID == c.account.ID && s.ClientID == c.client.ID {
			out = append(out, s.view())
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b webhookView) int { return a.Created.Compare(b.Created) })
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

func (p *Provider) handleDeleteWebhook(w http.ResponseWriter, r *http.Request, c caller) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.st.Webhooks[r.PathValue("id")]
	if !ok || s.AccountID != c.account.ID || s.ClientID != c.client.ID {
		apiError(w, http.StatusNotFound, "webhook_not_found", "No such webhook.")
		return
	}
	delete(p.st.Webhooks, s.ID)
	p.outbox = slices.DeleteFunc(p.outbox, func(d delivery) bool { return d.sub.ID == s.ID })
	if err := p.saveLocked(); err != nil {
		p.log.Error("sandbox delete webhook", "err", err)
		apiError(w, http.StatusInternalServerError, "internal_error", "The webhook could not be deleted.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// publishedLocked queues a "message.created" event for every subscription
// of the account that covers the message's channel. p.mu is held.
func (p *Provider) publishedLocked(accountID string, ch Channel, m Message) {
	for _, s := range p.st.Webhooks {
		if s.AccountID != accountID || (s.Channel != "" && s.Channel != ch.ID) {
			continue
		}
		ev := Event{ID: randomID("evt_", 12), Type: "message.created", Created: m.Created.Unix()}
		ev.Data.Channel, ev.Data.Message = ch, m
		body, _ := json.Marshal(ev)
		p.outbox = append(p.outbox, delivery{sub: *s, body: body, eventID: ev.ID, due: p.now()})
	}
	if len(p.outbox) > 0 {
		p.wakeDeliveries()
	}
}

// wakeDeliveries starts the delivery loop if it is not running. p.mu is
// held.
func (p *Provider) wakeDeliveries() {
	if p.delivering {
		select {
		case p.deliverWake <- struct{}{}:
		default:
		}
		return
	}
	p.delivering = true
	go p.deliverLoop()
}

// deliverLoop sends due deliveries until none is left or the provider is
// closed. Each subscription's deliveries go in the order their messages
// were posted: a failed one waits for its retry, and the ones after it for
// the same subscription wait behind it.
func (p *Provider) deliverLoop() {
	for {
		p.mu.Lock()
		if len(p.outbox) == 0 {
			p.delivering = false
			p.mu.Unlock()
			return
		}
		i, wait := p.nextDeliveryLocked(p.now())
		var d delivery
		if i >= 0 {
			d = p.outbox[i]
		}
		p.mu.Unlock()
		if i < 0 {
			t := time.NewTimer(wait)
			select {
			case <-p.closed:
				t.Stop()
				return
			case <-p.deliverWake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		p.attempt(d)
	}
}

// nextDeliveryLocked finds the delivery to send now: the first of its
// subscription's and due. Otherwise it says how long until one is due.
func (p *Provider) nextDeliveryLocked(now time.Time) (int, time.Duration) {
	blocked := map[string]bool{}
	wait := time.Duration(-1)
	for i, d := range p.outbox {
		if blocked[d.sub.ID] {
			continue
		}
		blocked[d.sub.ID] = true
		if !d.due.After(now) {
			return i, 0
		}
		if w := d.due.Sub(now); wait < 0 || w < wait {
			wait = w
		}
	}
	return -1, wait
}

// attempt sends one delivery: done, it leaves the outbox; failed, it waits
// there for its retry, keeping its place.
func (p *Provider) attempt(d delivery) {
	err := p.send(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.outbox, func(o delivery) bool { return o.eventID == d.eventID && o.sub.ID == d.sub.ID })
	if i < 0 {
		return
	}
	if err == nil {
		p.stats.DeliveriesSent++
		p.outbox = slices.Delete(p.outbox, i, i+1)
		return
	}
	p.stats.DeliveriesFailed++
	o := &p.outbox[i]
	o.attempt++
	if o.attempt >= deliveryAttempts {
		p.log.Warn("sandbox webhook delivery dropped", "webhook", d.sub.ID, "event", d.eventID, "attempts", o.attempt, "err", err)
		p.outbox = slices.Delete(p.outbox, i, i+1)
		return
	}
	o.due = p.now().Add(p.deliveryBackoff << (o.attempt - 1))
}

var errDeliveryFault = errors.New("delivery failed on purpose (admin fault)")

func (p *Provider) send(d delivery) error {
	p.mu.Lock()
	injected := p.deliveryFaults > 0
	if injected {
		p.deliveryFaults--
	}
	p.mu.Unlock()
	if injected {
		return errDeliveryFault
	}
	t := strconv.FormatInt(p.now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, d.sub.URL, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "SandboxChat-Webhooks/1")
	req.Header.Set("Sandbox-Event-Id", d.eventID)
	req.Header.Set(SignatureHeader, "t="+t+",v1="+Sign(d.sub.Secret, t, d.body))
	res, err := p.deliveryClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("answered %d", res.StatusCode)
	}
	return nil
}

// Sign is the v1 signature of a delivery: hex HMAC-SHA256 of "<t>.<body>"
// under the subscription's secret.
func Sign(secret, t string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// FailDeliveries makes the next n delivery attempts fail without being
// sent (each is retried with backoff, as an unanswered one would be).
func (p *Provider) FailDeliveries(n int) error {
	if n < 0 {
		return errors.New("sandbox: count cannot be negative")
	}
	p.mu.Lock()
	p.deliveryFaults = n
	p.mu.Unlock()
	return nil
}

// Emit posts n messages "text 1" … "text n" to a channel of an account, as
// people in the chat would.
func (p *Provider) Emit(account, channelName, text string, n int) ([]Message, error) {
	if n < 1 || n > 10000 {
		return nil, errors.New("sandbox: count must be from 1 to 10000")
	}
	out := make([]Message, 0, n)
	for i := 1; i <= n; i++ {
		m, err := p.Post(account, channelName, fmt.Sprintf("%s %d", text, i))
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

type emitRequest struct {
	Account string `json:"account"`
	Channel string `json:"channel"`
	Text    string `json:"text"`
	Count   int    `json:"count"`
}

func (p *Provider) handleAdminEmit(w http.ResponseWriter, r *http.Request) {
	var req emitRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	if req.Text == "" {
		req.Text = "Message"
	}
	if req.Channel == "" {
		req.Channel = "general"
	}
	msgs, err := p.Emit(req.Account, req.Channel, req.Text, req.Count)
	if errors.Is(err, ErrNotFound) {
		apiError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

func (p *Provider) handleAdminFailDeliveries(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Count int `json:"count"`
	}
	if !decodeAdmin(w, r, &req) {
		return
	}
	if err := p.FailDeliveries(req.Count); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p.Stats())
}
