package trigger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// GitHub's repository webhooks
// (https://docs.github.com/en/rest/repos/webhooks and
// https://docs.github.com/en/webhooks): publishing creates a hook on the
// repository for one event, sending JSON signed with a secret TaskJuice
// generated (X-Hub-Signature-256); GitHub pings it once on creation.
func init() {
	instantSources[[2]string{"github", "new-issue"}] = githubHook{event: "issues", object: "issue"}
	instantSources[[2]string{"github", "new-pull-request"}] = githubHook{event: "pull_request", object: "pull_request"}
}

// githubHook is one GitHub trigger: a webhook event (X-GitHub-Event) whose
// "opened" action is a new item, the object it carries named object.
type githubHook struct {
	event, object string
}

var (
	githubOwnerRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$`)
	githubRepoRE  = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// hooksURL is the repository's webhooks endpoint.
func (g githubHook) hooksURL(c pollCall) (string, error) {
	base, err := c.apiBase()
	if err != nil {
		return "", err
	}
	owner := strings.TrimSpace(c.inputs["owner"])
	repo := strings.TrimSpace(c.inputs["repo"])
	if !githubOwnerRE.MatchString(owner) {
		return "", fmt.Errorf("the trigger's owner %q is not a GitHub user or organization name", owner)
	}
	if !githubRepoRE.MatchString(repo) || repo == "." || repo == ".." {
		return "", fmt.Errorf("the trigger's repository %q is not a GitHub repository name", repo)
	}
	return base + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/hooks", nil
}

func (g githubHook) subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error) {
	u, err := g.hooksURL(c)
	if err != nil {
		return Subscription{}, err
	}
	if a.Secret == "" {
		return Subscription{}, errors.New("a GitHub webhook needs a signing secret")
	}
	type config struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		Secret      string `json:"secret"`
		InsecureSSL string `json:"insecure_ssl"`
	}
	body, err := json.Marshal(struct {
		Name   string   `json:"name"`
		Active bool     `json:"active"`
		Events []string `json:"events"`
		Config config   `json:"config"`
	}{"web", true, []string{g.event}, config{a.DeliveryURL, "json", a.Secret, "0"}})
	if err != nil {
		return Subscription{}, err
	}
	var hook struct {
		ID json.Number `json:"id"`
	}
	if err := c.send(ctx, "POST", u, "application/json", body, &hook); err != nil {
		return Subscription{}, err
	}
	if hook.ID == "" {
		return Subscription{}, errors.New("GitHub created the webhook but answered no id")
	}
	return Subscription{ID: hook.ID.String()}, nil
}

func (g githubHook) unsubscribe(ctx context.Context, c pollCall, s Subscription) error {
	if s.ID == "" {
		return nil
	}
	if _, err := strconv.ParseInt(s.ID, 10, 64); err != nil {
		return fmt.Errorf("%q is not a GitHub webhook id", s.ID)
	}
	u, err := g.hooksURL(c)
	if err != nil {
		return err
	}
	return c.send(ctx, "DELETE", u+"/"+s.ID, "", nil, nil, 404)
}

// verify checks X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of
// the body under the hook's secret.
func (githubHook) verify(d Delivery, secret string) error {
	if secret == "" {
		return errors.New("no signing secret is kept for this webhook")
	}
	sig := d.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return errors.New("the delivery carries no X-Hub-Signature-256 header")
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return errors.New("X-Hub-Signature-256 does not start with sha256=")
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return errors.New("X-Hub-Signature-256 is not hexadecimal")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(d.Body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("the X-Hub-Signature-256 signature does not match")
	}
	return nil
}

// parse: a ping (sent once when the hook is created) carries nothing; the
// trigger's event with action "opened" is one item, keyed by the object's
// id and the action, so a redelivery, or the same event reaching a second
// hook, starts no second run. The payload is the whole event (action,
// issue or pull_request, repository, sender).
func (g githubHook) parse(d Delivery, inputs map[string]string) ([]Item, *Reply, error) {
	ev := d.Header.Get("X-GitHub-Event")
	if ev == "ping" || ev != g.event {
		return nil, nil, nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(d.Body, &body); err != nil {
		return nil, nil, errors.New("the GitHub delivery is not a JSON object")
	}
	var action string
	_ = json.Unmarshal(body["action"], &action)
	if action != "opened" {
		return nil, nil, nil
	}
	var obj struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(body[g.object], &obj); err != nil || obj.ID == "" {
		return nil, nil, fmt.Errorf("the GitHub %s event carries no %s id", g.event, g.object)
	}
	return []Item{{ID: g.object + ":" + obj.ID.String() + ":" + action, Payload: append(json.RawMessage(nil), d.Body...)}}, nil, nil
}
