package trigger

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"taskjuice/internal/catalog"
	"taskjuice/internal/connection"
)

// bearerAPI stands in for connection.AppClient: it sends each request as
// built, with the connection's token as a bearer credential, to whatever
// host the app's apiHosts name (a local test server here).
type bearerAPI struct {
	token string
}

func (b bearerAPI) Do(ctx context.Context, connID string, build func(ctx context.Context) (*http.Request, error)) (connection.Response, error) {
	req, err := build(ctx)
	if err != nil {
		return connection.Response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return connection.Response{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return connection.Response{}, err
	}
	return connection.Response{Status: res.StatusCode, Header: res.Header, Body: body}, nil
}

// appAt is the catalog's app with its API at a local server.
func appAt(t *testing.T, key string, srv *httptest.Server) catalog.App {
	t.Helper()
	c, err := catalog.Load(catalog.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.App(key)
	if !ok {
		t.Fatalf("app %q: got missing", key)
	}
	a.APIHosts = []string{srv.URL}
	return a
}

// source is the registered instant source of an app trigger.
func source(t *testing.T, app, trigger string) instantSource {
	t.Helper()
	s, ok := instantSources[[2]string{app, trigger}]
	if !ok {
		t.Fatalf("%s %s: no instant source registered", app, trigger)
	}
	return s
}
