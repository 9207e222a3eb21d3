// Package demo is the configuration and bootstrap the example servers share:
// it reads the environment, starts a fake Cognito when none is configured,
// puts a cognitomcp.Proxy in front of the example's MCP handler and serves
// until SIGINT or SIGTERM. The examples themselves only build MCP servers.
package demo

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cognitomcp/cognitomcp"
)

// config is the examples' configuration; loadConfig reads it from the
// environment.
type config struct {
	// Cognito. All empty in fake mode (see fake).
	UserPoolID   string   // COGNITO_USER_POOL_ID
	ClientID     string   // COGNITO_CLIENT_ID
	ClientSecret string   // COGNITO_CLIENT_SECRET
	Region       string   // COGNITO_REGION
	IssuerURL    string   // COGNITO_ISSUER_URL
	DomainURL    string   // COGNITO_DOMAIN
	Scopes       []string // COGNITO_SCOPES

	// BaseURL is BASE_URL; empty when BASE_URL is unset, in which case the
	// URL follows the bound listener (ADDR=127.0.0.1:0 gives the real port).
	BaseURL string
	Addr    string // ADDR

	// RedisURL is REDIS_URL; empty for the memory store. When set, the MCP
	// handler runs stateless (MCPConfig.Stateless), for replicas. With
	// master_name in its query it names Sentinels (see parseRedisURL).
	RedisURL string

	// The keys (see setKeys): COGNITOMCP_MASTER_SECRET stands for the keys
	// the other two leave unset. Without it, the cookie key is derived from
	// JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY when both are set; anything
	// else unset is generated at start, and dies with the process. The two
	// lists are comma separated, in order: the first key signs or seals, the
	// others only verify or open (for rotation).
	SigningKeys    [][]byte // JWT_SIGNING_KEY
	EncryptionKeys [][]byte // STORAGE_ENCRYPTION_KEY
	MasterSecret   []byte   // COGNITOMCP_MASTER_SECRET

	AutoLogin           string   // DEMO_AUTO_LOGIN
	AllowedRedirectURIs []string // ALLOWED_REDIRECT_URIS
	AllowedOrigins      []string // ALLOWED_ORIGINS
	ClientIPHeader      string   // CLIENT_IP_HEADER
	ClientIPHops        int      // CLIENT_IP_HOPS, default 1: trusted proxies in front
	LogLevel            slog.Level
	LogJSON             bool // LOG_FORMAT=json

	// ShutdownDelay (SHUTDOWN_DELAY, default 0) is how long the server keeps
	// serving after a signal with /readyz failing, so that a load balancer
	// stops sending it requests before it stops accepting them.
	ShutdownDelay time.Duration
	// ShutdownTimeout (SHUTDOWN_TIMEOUT) bounds the wait for requests in
	// flight after that; default defaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// defaultShutdownTimeout outlasts the proxy's longest request: a sign-in
// callback or a refresh waits up to 15 s for Cognito.
const defaultShutdownTimeout = 20 * time.Second

// fake reports whether no Cognito is configured, so the examples run the
// fake one from cognitotest.
func (c config) fake() bool { return c.UserPoolID == "" && c.IssuerURL == "" }

// generatesKeys reports whether setKeys will generate keys at start: no
// master secret, and not both a signing and an encryption key.
func (c config) generatesKeys() bool {
	return c.MasterSecret == nil && (c.SigningKeys == nil || c.EncryptionKeys == nil)
}

// public reports whether BASE_URL is set and not on loopback: a deployment,
// not a run on a developer's machine.
func (c config) public() bool {
	u, err := url.Parse(c.BaseURL)
	return c.BaseURL != "" && err == nil && !isLoopback(u.Hostname())
}

// configError is a configuration mistake: the command exits 2.
type configError string

func (e configError) Error() string { return string(e) }

func configErrorf(format string, args ...any) error { return configError(fmt.Sprintf(format, args...)) }

const redisURLError = "REDIS_URL: not a redis:// or rediss:// URL: [user:password@]host:port[/db][?option=value&…], options as go-redis names them (read_timeout=1s, master_name=… for Sentinel)"

// demoUsers are the fake pool's users, for DEMO_AUTO_LOGIN.
var demoUsers = []string{"alice", "bob"}

// loadConfig reads the configuration through getenv (os.Getenv in main).
// Every error names the variable at fault in one line.
func loadConfig(getenv func(string) string) (config, error) {
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }
	c := config{
		UserPoolID:          env("COGNITO_USER_POOL_ID"),
		ClientID:            env("COGNITO_CLIENT_ID"),
		ClientSecret:        env("COGNITO_CLIENT_SECRET"),
		Region:              env("COGNITO_REGION"),
		IssuerURL:           env("COGNITO_ISSUER_URL"),
		DomainURL:           env("COGNITO_DOMAIN"),
		Scopes:              strings.Fields(getenv("COGNITO_SCOPES")),
		RedisURL:            env("REDIS_URL"),
		AutoLogin:           env("DEMO_AUTO_LOGIN"),
		AllowedRedirectURIs: strings.Fields(getenv("ALLOWED_REDIRECT_URIS")),
		AllowedOrigins:      strings.Fields(getenv("ALLOWED_ORIGINS")),
		ClientIPHeader:      env("CLIENT_IP_HEADER"),
	}
	if h := c.ClientIPHeader; h != "" && strings.ContainsAny(h, " :\t,") {
		return config{}, configErrorf("CLIENT_IP_HEADER: %q is not a header name, e.g. X-Forwarded-For", h)
	}
	c.ClientIPHops = 1
	if v := env("CLIENT_IP_HOPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10 {
			return config{}, configErrorf("CLIENT_IP_HOPS: %q is not a number of proxies from 1 to 10", v)
		}
		c.ClientIPHops = n
	}
	if err := c.loadCognito(); err != nil {
		return config{}, err
	}
	if err := c.loadAddress(env("BASE_URL"), env("ADDR")); err != nil {
		return config{}, err
	}
	var err error
	if c.SigningKeys, err = decodeKeys("JWT_SIGNING_KEY", env("JWT_SIGNING_KEY"), 32, false); err != nil {
		return config{}, err
	}
	if c.EncryptionKeys, err = decodeKeys("STORAGE_ENCRYPTION_KEY", env("STORAGE_ENCRYPTION_KEY"), 32, true); err != nil {
		return config{}, err
	}
	if c.MasterSecret, err = decodeKey("COGNITOMCP_MASTER_SECRET", env("COGNITOMCP_MASTER_SECRET"), 32, false); err != nil {
		return config{}, err
	}
	if c.RedisURL != "" {
		if _, _, err := parseRedisURL(c.RedisURL); err != nil {
			return config{}, configError(redisURLError) // not err: it may quote the password
		}
	}
	if err := c.checkPublic(); err != nil {
		return config{}, err
	}
	if err := c.loadLogging(env("LOG_LEVEL"), env("LOG_FORMAT")); err != nil {
		return config{}, err
	}
	if c.ShutdownDelay, err = duration("SHUTDOWN_DELAY", env("SHUTDOWN_DELAY"), 0); err != nil {
		return config{}, err
	}
	if c.ShutdownTimeout, err = duration("SHUTDOWN_TIMEOUT", env("SHUTDOWN_TIMEOUT"), defaultShutdownTimeout); err != nil {
		return config{}, err
	}
	return c, nil
}

// checkPublic refuses what only a run on loopback may do, once BASE_URL is
// public: sign in against the fake Cognito, which anyone could then use, and
// generate keys at start, which die with the process (every restart or
// rolling deploy would end every sign-in) and differ between replicas.
// Without BASE_URL, or on loopback, both still run, with a warning for the
// keys: that includes REDIS_URL without keys, which the README documents as
// a warning (replicas then refuse each other's records).
func (c config) checkPublic() error {
	if !c.public() {
		return nil
	}
	if c.fake() {
		return configErrorf("COGNITO_USER_POOL_ID (or COGNITO_ISSUER_URL) is required when BASE_URL (%q) is not on loopback: the fake Cognito is for local runs only", c.BaseURL)
	}
	if c.generatesKeys() {
		return configErrorf("COGNITOMCP_MASTER_SECRET, or JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY, are required when BASE_URL (%q) is not on loopback: keys generated at start die with the process and differ between replicas (make one with: openssl rand -base64 32)", c.BaseURL)
	}
	return nil
}

// loadLogging sets LogLevel and LogJSON from LOG_LEVEL and LOG_FORMAT.
func (c *config) loadLogging(level, format string) error {
	if level != "" {
		if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
			return configErrorf("LOG_LEVEL: %q is not debug, info, warn or error", level)
		}
	}
	switch strings.ToLower(format) {
	case "", "text":
	case "json":
		c.LogJSON = true
	default:
		return configErrorf("LOG_FORMAT: %q is not json or text", format)
	}
	return nil
}

// duration parses the duration text names (def when empty): a Go duration
// ("10s", "1m30s") or whole seconds ("10"), not negative.
func duration(name, text string, def time.Duration) (time.Duration, error) {
	if text == "" {
		return def, nil
	}
	d, err := time.ParseDuration(text)
	if n, nerr := strconv.ParseUint(text, 10, 32); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d < 0 {
		return 0, configErrorf("%s: %q is not a duration, e.g. 10s", name, text)
	}
	return d, nil
}

// parseRedisURL parses REDIS_URL: with master_name in its query, as go-redis
// parses a Sentinel URL (host:port and every addr= are Sentinels, userinfo
// their credentials, password= the master's), else as a plain server's.
// Exactly one of the results is set when err is nil.
func parseRedisURL(raw string) (*redis.Options, *redis.FailoverOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	if u.Query().Get("master_name") != "" {
		fo, err := redis.ParseFailoverURL(raw)
		return nil, fo, err
	}
	o, err := redis.ParseURL(raw)
	return o, nil, err
}

func (c *config) loadCognito() error {
	if c.fake() {
		// A half-configured Cognito must not silently become the fake one.
		for _, v := range []struct{ name, value string }{
			{"COGNITO_CLIENT_ID", c.ClientID}, {"COGNITO_CLIENT_SECRET", c.ClientSecret},
			{"COGNITO_REGION", c.Region}, {"COGNITO_DOMAIN", c.DomainURL},
		} {
			if v.value != "" {
				return configErrorf("%s is set but COGNITO_USER_POOL_ID is not; set COGNITO_USER_POOL_ID, or unset %s to run the fake Cognito", v.name, v.name)
			}
		}
		if c.AutoLogin != "" && !slices.Contains(demoUsers, c.AutoLogin) {
			return configErrorf("DEMO_AUTO_LOGIN: %q is not a demo user (%s)", c.AutoLogin, strings.Join(demoUsers, ", "))
		}
		return nil
	}
	source := "COGNITO_USER_POOL_ID"
	if c.UserPoolID == "" {
		source = "COGNITO_ISSUER_URL"
	}
	if c.ClientID == "" {
		return configErrorf("COGNITO_CLIENT_ID is required when %s is set", source)
	}
	if c.AutoLogin != "" {
		return configError("DEMO_AUTO_LOGIN works only with the fake Cognito; unset it or unset " + source)
	}
	if c.UserPoolID != "" {
		region, err := cognitomcp.RegionFromPoolID(c.UserPoolID)
		if err != nil {
			return configErrorf("COGNITO_USER_POOL_ID: %q is not of the form {region}_{id}, e.g. eu-west-1_AbCdEf123", c.UserPoolID)
		}
		if c.Region != "" && c.Region != region {
			return configErrorf("COGNITO_REGION: %q does not match the region of COGNITO_USER_POOL_ID (%q)", c.Region, region)
		}
	}
	for _, v := range []struct{ name, value string }{{"COGNITO_ISSUER_URL", c.IssuerURL}, {"COGNITO_DOMAIN", c.DomainURL}} {
		if u, err := url.Parse(v.value); v.value != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			return configErrorf("%s: %q is not an absolute http(s) URL", v.name, redactURL(v.value))
		}
	}
	return nil
}

// loadAddress sets BaseURL and Addr. ADDR defaults to BASE_URL's host:port
// when BASE_URL is http (on loopback), to ":8000" when it is https (served
// plain behind a TLS proxy), and to "localhost:8000" without BASE_URL. BASE_URL
// defaults to http://localhost:8000, or rather follows the bound listener, so
// that ADDR=127.0.0.1:0 gives the real port.
func (c *config) loadAddress(base, addr string) error {
	if base != "" {
		u, err := url.Parse(base)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return configErrorf("BASE_URL: %q is not an absolute URL without userinfo, query or fragment", redactURL(base))
		}
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
		default:
			return configErrorf("BASE_URL: %q must be https (plain http only on localhost)", redactURL(base))
		}
		c.BaseURL = strings.TrimSuffix(base, "/")
		switch {
		case addr != "":
		case u.Scheme == "https": // TLS ends at a proxy in front, which forwards plain HTTP
			addr = ":8000"
		case u.Port() == "":
			addr = net.JoinHostPort(u.Hostname(), "80")
		default:
			addr = u.Host
		}
	}
	if addr == "" {
		addr = "localhost:8000"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return configErrorf("ADDR: %q is not host:port, e.g. localhost:8000 or :8000", addr)
	}
	if c.BaseURL == "" && host != "" && !isLoopback(host) && !isUnspecified(host) {
		return configErrorf("BASE_URL is required when ADDR (%q) is not a loopback address: the public URL must be https, or http on localhost", addr)
	}
	c.Addr = addr
	return nil
}

// followURL is the base URL of a listener bound for ADDR when BASE_URL is
// unset: its real port, on ADDR's loopback host or on localhost.
func followURL(addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(bound.String())
	if host == "" || isUnspecified(host) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// redactURL is raw fit to quote in an error: everything between its scheme
// and its last "@" becomes "xxxxx", since that may hold a password, even in
// a URL that does not parse (as cognitomcp does for its own settings).
func redactURL(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return raw
	}
	scheme := ""
	if i := strings.Index(raw[:at], "://"); i > 0 && isScheme(raw[:i]) {
		scheme = raw[:i+len("://")]
	}
	return scheme + "xxxxx" + raw[at:]
}

// isScheme reports whether s is a URI scheme (RFC 3986 §3.1): what precedes
// "://" in a value without one may be part of a password.
func isScheme(s string) bool {
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// decodeKeys decodes a comma-separated list of keys as decodeKey does, in
// order; nil when text is empty. No key may appear twice.
func decodeKeys(name, text string, min int, exact bool) ([][]byte, error) {
	if text == "" {
		return nil, nil
	}
	parts := strings.Split(text, ",")
	var keys [][]byte
	for i, part := range parts {
		label := name
		if len(parts) > 1 {
			label = fmt.Sprintf("%s (key %d of %d)", name, i+1, len(parts))
		}
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, configErrorf("%s: empty; separate keys with single commas", label)
		}
		key, err := decodeKey(label, part, min, exact)
		if err != nil {
			return nil, err
		}
		for j, k := range keys {
			if string(k) == string(key) {
				return nil, configErrorf("%s: the same key as key %d", label, j+1)
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// decodeKey decodes a hex or base64 key of at least min bytes (exactly min
// when exact). Hex wins when the text is valid hex.
func decodeKey(name, text string, min int, exact bool) ([]byte, error) {
	if text == "" {
		return nil, nil
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		key = nil
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if k, err := enc.DecodeString(text); err == nil {
				key = k
				break
			}
		}
	}
	switch {
	case key == nil:
		return nil, configErrorf("%s: not valid base64 or hex (make one with: openssl rand -base64 32)", name)
	case exact && len(key) != min:
		return nil, configErrorf("%s: decodes to %d bytes, want exactly %d (make one with: openssl rand -base64 %d)", name, len(key), min, min)
	case len(key) < min:
		return nil, configErrorf("%s: decodes to %d bytes, want at least %d (make one with: openssl rand -base64 %d)", name, len(key), min, min)
	}
	return key, nil
}
