package config_test

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"taskjuice/internal/config"
)

func parse(t *testing.T, env map[string]string, args ...string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := config.Register(fs, func(k string) string { return env[k] })
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c, c.Finish()
}

func TestDefaults(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./data" || c.DatabaseURL != "data/taskjuice.db" || c.BaseURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults: got listen %q data %q db %q base %q", c.Listen, c.DataDir, c.DatabaseURL, c.BaseURL)
	}
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	env := map[string]string{
		"TASKJUICE_LISTEN":       "127.0.0.1:9000",
		"TASKJUICE_DATA_DIR":     "/srv/tj",
		"TASKJUICE_DATABASE_URL": "postgres://db/tj",
		"TASKJUICE_SECRET_KEY":   "k",
		"TASKJUICE_NO_DEMO":      "true",
		"TASKJUICE_SMTP_PORT":    "2525",
	}
	c, err := parse(t, env, "--listen", "127.0.0.1:9100", "--base-url", "https://tj.example/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" {
		t.Fatalf("listen: got %q, want the flag's", c.Listen)
	}
	if c.DataDir != "/srv/tj" || c.DatabaseURL != "postgres://db/tj" || !c.NoDemo || c.SMTP.Port != 2525 || c.SecretKey != "k" {
		t.Fatalf("environment not applied: %+v", c)
	}
	if c.BaseURL != "https://tj.example" || !c.SecureCookies() {
		t.Fatalf("base url: got %q secure=%v", c.BaseURL, c.SecureCookies())
	}
}

func TestInvalidValues(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "nope"},
		{"--base-url", "ftp://x"},
		{"--log-level", "loud"},
		{"--smtp-tls", "maybe"},
		{"--smtp-port", "0"},
		{"--http-allow-cidrs", "10.0.0.0/8,not-a-range"},
		{"--trusted-proxies", "10.0.0.0/33"},
	} {
		if _, err := parse(t, nil, args...); err == nil {
			t.Errorf("%v: got nil error", args)
		}
	}
}

// TestREADMEListsEverySetting keeps the README's configuration table in step
// with the settings the binary reads.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings {
		if !strings.Contains(string(readme), "`"+s.Env+"`") {
			t.Errorf("README lacks %s", s.Env)
		}
		if s.Flag != "" && !strings.Contains(string(readme), "`--"+s.Flag+"`") {
			t.Errorf("README lacks --%s", s.Flag)
		}
	}
}

func TestEngineTimings(t *testing.T) {
	c, err := parse(t, map[string]string{"TASKJUICE_HEARTBEAT_TIMEOUT": "8s"}, "--drain-timeout", "45s")
	if err != nil {
		t.Fatal(err)
	}
	if c.Engine.DrainTimeout != 45*time.Second || c.Engine.Lease != 2*time.Minute || c.Engine.Heartbeat != time.Second || c.Engine.HeartbeatTimeout != 8*time.Second {
		t.Fatalf("engine timings: got %+v", c.Engine)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{args: []string{"--drain-timeout", "soon"}},
		{args: []string{"--run-lease", "-1s"}},
		{env: map[string]string{"TASKJUICE_HEARTBEAT": "often"}},
		{args: []string{"--heartbeat", "5s", "--heartbeat-timeout", "2s"}},
	} {
		if _, err := parse(t, tc.env, tc.args...); err == nil {
			t.Errorf("%v %v: no error, want one", tc.env, tc.args)
		}
	}
}

// HTTP steps reach only public addresses unless the operator says so.
func TestEgressSettings(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Egress(); p.AllowPrivate || len(p.AllowCIDRs) != 0 {
		t.Fatalf("default egress: got %+v, want public addresses only", p)
	}
	c, err = parse(t, map[string]string{"TASKJUICE_HTTP_ALLOW_PRIVATE": "true", "TASKJUICE_HTTP_ALLOW_CIDRS": "10.20.0.0/16, 192.168.1.5"})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Egress()
	if !p.AllowPrivate || len(p.AllowCIDRs) != 2 || p.AllowCIDRs[0].String() != "10.20.0.0/16" || p.AllowCIDRs[1].String() != "192.168.1.5/32" {
		t.Fatalf("egress from the environment: got %+v", p)
	}
	c, err = parse(t, map[string]string{"TASKJUICE_HTTP_ALLOW_PRIVATE": "true"}, "--http-allow-private=false")
	if err != nil || c.Egress().AllowPrivate {
		t.Fatalf("flag over environment: got %+v, %v; want private refused", c.Egress(), err)
	}
}

// Forwarded addresses are believed only from proxies the operator names.
func TestTrustedProxies(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil || len(c.ProxyRanges()) != 0 || c.HSTS() {
		t.Fatalf("defaults: got proxies %v, hsts %v, %v; want none", c.ProxyRanges(), c.HSTS(), err)
	}
	c, err = parse(t, map[string]string{"TASKJUICE_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.5"}, "--base-url", "https://tj.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ProxyRanges(); len(got) != 2 || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.168.1.5/32" {
		t.Fatalf("proxies from the environment: got %v", got)
	}
	if !c.HSTS() {
		t.Fatal("https base URL: want HSTS")
	}
	c, err = parse(t, map[string]string{"TASKJUICE_TRUSTED_PROXIES": "10.0.0.0/8"}, "--trusted-proxies", "172.16.0.0/12")
	if err != nil || len(c.ProxyRanges()) != 1 || c.ProxyRanges()[0].String() != "172.16.0.0/12" {
		t.Fatalf("flag over environment: got %v, %v", c.ProxyRanges(), err)
	}
}
