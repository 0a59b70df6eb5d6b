package trigger

import (
	"context"
	"net/http"
	"time"
)

// Instant app triggers: the app pushes each event to TaskJuice. Publishing
// subscribes at the app (through the connection, where the app's API can
// create the webhook), every delivery is verified the app's way before a
// run starts, and unpublishing unsubscribes. An instantSource knows one
// app's side of this; the Listener (instant.go) keeps the subscriptions
// and turns verified deliveries into runs, one per app-side event id.

// Delivery is one HTTP request the app sent to a trigger's address.
type Delivery struct {
	Header http.Header
	Body   []byte
	// Now is when it arrived (signature time windows are judged against it).
	Now time.Time
}

// SubscribeArgs is what subscribing needs besides the connection.
type SubscribeArgs struct {
	// DeliveryURL is the address the app is to send events to.
	DeliveryURL string
	// Secret is a signing secret TaskJuice generated, for apps that take
	// one from the subscriber (GitHub). An app that generates its own
	// (Stripe, the sandbox) returns it in Subscription.Secret instead.
	Secret string
	// Account is the connection's external account id (Slack: the team
	// id), for apps that route by it.
	Account string
}

// Subscription is what subscribing at the app produced.
type Subscription struct {
	// ID is the app-side id of the webhook, kept to delete it again; empty
	// when nothing was created at the app.
	ID string
	// Secret signs the deliveries; sealed in the vault, never shown again.
	// Empty when the app signs with an app-wide secret (Slack's signing
	// secret, from the server's configuration).
	Secret string
	// Route is the key deliveries to an app-wide address are routed by
	// (Slack: the team id); empty for a per-trigger address.
	Route string
	// Manual is true when the app's API cannot create the webhook: the
	// workflow page shows the address (and the secret, once) to paste at
	// the app.
	Manual bool
}

// Reply is an answer a delivery asks for instead of the usual 200 (Slack's
// url_verification challenge).
type Reply struct {
	Status      int
	ContentType string
	Body        []byte
}

// instantSource is one app trigger TaskJuice can listen to.
type instantSource interface {
	// subscribe creates the webhook at the app for a.DeliveryURL through
	// the connection of c.
	subscribe(ctx context.Context, c pollCall, a SubscribeArgs) (Subscription, error)
	// unsubscribe deletes it at the app; a webhook already gone is no
	// error.
	unsubscribe(ctx context.Context, c pollCall, s Subscription) error
	// verify checks the delivery's signature under secret the app's way
	// (including its time window); an error means 401 and no run.
	verify(d Delivery, secret string) error
	// parse turns a verified delivery into the events it carries that
	// match the trigger's inputs, each with its app-side id (none for an
	// event of another type or channel), or into the reply a handshake
	// asks for.
	parse(d Delivery, inputs map[string]string) (items []Item, reply *Reply, err error)
}

// sharedInstantSource is an instant source whose app sends every
// subscriber's events to one app-wide address (Slack's Events API: the
// Request URL belongs to the Slack app), signed with an app-wide secret.
// Deliveries there are routed to triggers by Subscription.Route.
type sharedInstantSource interface {
	instantSource
	// route reads the routing key of a verified delivery ("" for a
	// handshake, which parse answers).
	route(d Delivery) (string, error)
}

// instantSources are the app triggers TaskJuice can listen to, by app and
// trigger key.
var instantSources = map[[2]string]instantSource{}

// CanListen reports whether TaskJuice can listen to an app's trigger.
func CanListen(app, trigger string) bool {
	_, ok := instantSources[[2]string{app, trigger}]
	return ok
}
