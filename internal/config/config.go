// Package config reads TaskJuice's settings from flags and the environment.
// Every setting has a flag and a TASKJUICE_ variable; a flag given on the
// command line wins over the variable, which wins over the default.
// Secrets (the encryption key, the SMTP password) come from the environment
// only, so they never show in a process listing.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"taskjuice/internal/egress"
)

// Config is the whole configuration of a TaskJuice process.
type Config struct {
	Listen      string
	DataDir     string
	DatabaseURL string
	BaseURL     string
	SecretKey   string // from TASKJUICE_SECRET_KEY only
	// OldSecretKeys are retired keys still needed to open credentials until
	// rotate-key has re-encrypted them (comma-separated).
	OldSecretKeys string
	NoDemo        bool
	NoSandbox     bool
	// ExternalSandboxURL is a sandbox running elsewhere (taskjuice
	// sandbox) used instead of the built-in one, e.g. by several
	// processes that must see the same sandbox accounts.
	ExternalSandboxURL string
	// AppsFile names a JSON file of extra (generic OAuth 2.0) apps.
	AppsFile  string
	LogLevel  string
	LogFormat string
	SMTP      SMTP
	// HTTPAllowPrivate lets HTTP steps reach loopback, private, link-local
	// and metadata addresses; HTTPAllowCIDRs (comma-separated) opens only
	// some ranges. See Egress.
	HTTPAllowPrivate bool
	HTTPAllowCIDRs   string
	httpCIDRs        []netip.Prefix
	// TrustedProxies (comma-separated ranges) are the reverse proxies whose
	// X-Forwarded-For names the client; see ProxyRanges.
	TrustedProxies string
	proxyRanges    []netip.Prefix
	Engine         Engine
	// errs are settings from the environment that did not parse.
	errs []error
}

// Engine tunes how runs are worked on and handed over between processes.
type Engine struct {
	// DrainTimeout is how long a stopping process lets the steps it is
	// executing finish before it cancels them.
	DrainTimeout time.Duration
	// Lease is how long a run claimed by a process stays its own without
	// being renewed.
	Lease time.Duration
	// Heartbeat is how often a process says it is alive; HeartbeatTimeout
	// is how old that may get before other processes take its runs over.
	Heartbeat, HeartbeatTimeout time.Duration
}

// SMTP is the outgoing mail server.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string // from TASKJUICE_SMTP_PASSWORD only
	From     string
	// TLS is "starttls" (default), "tls" (implicit, port 465) or "none".
	TLS string
}

// Setting documents one setting; the README's configuration table is
// checked against this list.
type Setting struct {
	Flag, Env, Default, Help string
}

// Settings lists every setting in the order the README shows them.
var Settings = []Setting{
	{"listen", "TASKJUICE_LISTEN", "127.0.0.1:8080", "address the HTTP server listens on"},
	{"data-dir", "TASKJUICE_DATA_DIR", "./data", "folder for the SQLite database and the key file"},
	{"database-url", "TASKJUICE_DATABASE_URL", "", "database: empty for SQLite in the data folder, or a postgres:// URL"},
	{"base-url", "TASKJUICE_BASE_URL", "", "public URL of this server, for links in emails and OAuth redirects (default http://LISTEN)"},
	{"", "TASKJUICE_SECRET_KEY", "", "32-byte key encrypting credentials (64 hex digits or base64); default: DATA_DIR/secret.key, created on first start"},
	{"", "TASKJUICE_OLD_SECRET_KEYS", "", "retired keys, comma-separated, still needed to read credentials until taskjuice rotate-key has run"},
	{"no-demo", "TASKJUICE_NO_DEMO", "false", "do not create the demo account on first start"},
	{"no-sandbox", "TASKJUICE_NO_SANDBOX", "false", "do not serve the built-in sandbox provider under /sandbox"},
	{"external-sandbox-url", "TASKJUICE_EXTERNAL_SANDBOX_URL", "", "use the sandbox running at this URL (taskjuice sandbox) instead of serving one under /sandbox, e.g. for several processes sharing one"},
	{"", "TASKJUICE_SANDBOX_ADMIN_TOKEN", "", "bearer token for the sandbox's admin API (/sandbox/admin/...); empty turns the admin API off"},
	{"apps-file", "TASKJUICE_APPS_FILE", "", "JSON file of extra OAuth 2.0 apps (generic apps) defined by an administrator"},
	{"log-level", "TASKJUICE_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-format", "TASKJUICE_LOG_FORMAT", "text", "text or json"},
	{"smtp-host", "TASKJUICE_SMTP_HOST", "", "SMTP server for outgoing email; empty disables email"},
	{"smtp-port", "TASKJUICE_SMTP_PORT", "587", "SMTP port"},
	{"smtp-username", "TASKJUICE_SMTP_USERNAME", "", "SMTP user name"},
	{"", "TASKJUICE_SMTP_PASSWORD", "", "SMTP password"},
	{"smtp-from", "TASKJUICE_SMTP_FROM", "TaskJuice <taskjuice@localhost>", "sender address of outgoing email"},
	{"smtp-tls", "TASKJUICE_SMTP_TLS", "starttls", "starttls, tls or none"},
	{"drain-timeout", "TASKJUICE_DRAIN_TIMEOUT", "30s", "on stop, how long steps already executing may take to finish before they are cancelled"},
	{"run-lease", "TASKJUICE_RUN_LEASE", "2m", "how long a claimed run stays a process's own without being renewed"},
	{"heartbeat", "TASKJUICE_HEARTBEAT", "1s", "how often a process records that it is alive"},
	{"heartbeat-timeout", "TASKJUICE_HEARTBEAT_TIMEOUT", "5s", "how old a process's heartbeat may get before other processes take its runs over"},
	{"http-allow-private", "TASKJUICE_HTTP_ALLOW_PRIVATE", "false", "let HTTP steps reach loopback, private, link-local and metadata addresses"},
	{"http-allow-cidrs", "TASKJUICE_HTTP_ALLOW_CIDRS", "", "comma-separated address ranges HTTP steps may reach though not public, e.g. 10.20.0.0/16"},
	{"trusted-proxies", "TASKJUICE_TRUSTED_PROXIES", "", "comma-separated address ranges of the reverse proxies in front of TaskJuice, e.g. 10.0.0.0/8; only requests from them have the client address read from X-Forwarded-For"},
}

// Register defines the flags on fs, with defaults taken from getenv; call
// Finish after fs.Parse.
func Register(fs *flag.FlagSet, getenv func(string) string) *Config {
	c := &Config{}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	strs := map[string]*string{
		"listen": &c.Listen, "data-dir": &c.DataDir, "database-url": &c.DatabaseURL, "base-url": &c.BaseURL,
		"apps-file": &c.AppsFile, "log-level": &c.LogLevel, "log-format": &c.LogFormat, "smtp-host": &c.SMTP.Host,
		"smtp-username": &c.SMTP.Username, "smtp-from": &c.SMTP.From, "smtp-tls": &c.SMTP.TLS,
		"http-allow-cidrs": &c.HTTPAllowCIDRs, "external-sandbox-url": &c.ExternalSandboxURL,
		"trusted-proxies": &c.TrustedProxies,
	}
	durs := map[string]*time.Duration{
		"drain-timeout": &c.Engine.DrainTimeout, "run-lease": &c.Engine.Lease,
		"heartbeat": &c.Engine.Heartbeat, "heartbeat-timeout": &c.Engine.HeartbeatTimeout,
	}
	bools := map[string]*bool{"no-demo": &c.NoDemo, "no-sandbox": &c.NoSandbox, "http-allow-private": &c.HTTPAllowPrivate}
	for _, s := range Settings {
		switch {
		case s.Flag == "":
			continue
		case durs[s.Flag] != nil:
			fs.Var(&duration{durs[s.Flag]}, s.Flag, s.Help+" ("+s.Env+")")
			if err := fs.Set(s.Flag, env(s.Env, s.Default)); err != nil {
				c.errs = append(c.errs, fmt.Errorf("%s: %w", s.Env, err))
				_ = fs.Set(s.Flag, s.Default)
			}
		case strs[s.Flag] != nil:
			fs.StringVar(strs[s.Flag], s.Flag, env(s.Env, s.Default), s.Help+" ("+s.Env+")")
		case bools[s.Flag] != nil:
			b, _ := strconv.ParseBool(env(s.Env, s.Default))
			fs.BoolVar(bools[s.Flag], s.Flag, b, s.Help+" ("+s.Env+")")
		case s.Flag == "smtp-port":
			port, _ := strconv.Atoi(env(s.Env, s.Default))
			fs.IntVar(&c.SMTP.Port, s.Flag, port, s.Help+" ("+s.Env+")")
		}
	}
	c.SecretKey = getenv("TASKJUICE_SECRET_KEY")
	c.OldSecretKeys = getenv("TASKJUICE_OLD_SECRET_KEYS")
	c.SMTP.Password = getenv("TASKJUICE_SMTP_PASSWORD")
	return c
}

// duration is a flag.Value for a positive duration such as 30s or 2m.
type duration struct{ d *time.Duration }

func (v *duration) String() string {
	if v == nil || v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v *duration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration such as 30s or 2m", s)
	}
	*v.d = d
	return nil
}

// Finish fills derived defaults and validates. Call it after parsing flags.
func (c *Config) Finish() error {
	errs := c.errs
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: want host:port", c.Listen))
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(c.DataDir, "taskjuice.db")
	}
	if c.BaseURL == "" {
		host, port, _ := net.SplitHostPort(c.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.BaseURL = "http://" + net.JoinHostPort(host, port)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("base-url %q: want an http:// or https:// URL", c.BaseURL))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	switch c.SMTP.TLS {
	case "starttls", "tls", "none":
	default:
		errs = append(errs, fmt.Errorf("smtp-tls %q: want starttls, tls or none", c.SMTP.TLS))
	}
	if c.SMTP.Port <= 0 || c.SMTP.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp-port %d: want 1-65535", c.SMTP.Port))
	}
	if c.Engine.HeartbeatTimeout <= c.Engine.Heartbeat {
		errs = append(errs, fmt.Errorf("heartbeat-timeout %s: want longer than heartbeat (%s)", c.Engine.HeartbeatTimeout, c.Engine.Heartbeat))
	}
	cidrs, err := egress.ParseCIDRs(c.HTTPAllowCIDRs)
	if err != nil {
		errs = append(errs, fmt.Errorf("http-allow-cidrs: %w", err))
	}
	c.httpCIDRs = cidrs
	proxies, err := egress.ParseCIDRs(c.TrustedProxies)
	if err != nil {
		errs = append(errs, fmt.Errorf("trusted-proxies: %w", err))
	}
	c.proxyRanges = proxies
	return errors.Join(errs...)
}

// Egress is what HTTP steps may reach besides public addresses.
func (c *Config) Egress() egress.Policy {
	return egress.Policy{AllowPrivate: c.HTTPAllowPrivate, AllowCIDRs: c.httpCIDRs}
}

// ProxyRanges are the trusted reverse proxies: a request from one of them
// has its client address read from X-Forwarded-For. Empty: never.
func (c *Config) ProxyRanges() []netip.Prefix { return c.proxyRanges }

// HSTS reports whether responses tell browsers to use https only: when
// the public URL is https.
func (c *Config) HSTS() bool { return c.SecureCookies() }

// SecureCookies reports whether cookies should be marked Secure: when the
// public URL is https (the server may sit behind a TLS-terminating proxy).
func (c *Config) SecureCookies() bool { return strings.HasPrefix(c.BaseURL, "https://") }
