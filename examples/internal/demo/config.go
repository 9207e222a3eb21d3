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
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

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
	// handler runs stateless (MCPConfig.Stateless), for replicas.
	RedisURL string

	// The keys (see setKeys): COGNITOMCP_MASTER_SECRET stands for the keys
	// the other two leave unset. Without it, the cookie key is derived from
	// JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY when both are set; anything
	// else unset is generated at start, and dies with the process.
	SigningKey    []byte // JWT_SIGNING_KEY
	EncryptionKey []byte // STORAGE_ENCRYPTION_KEY
	MasterSecret  []byte // COGNITOMCP_MASTER_SECRET

	AutoLogin           string   // DEMO_AUTO_LOGIN
	AllowedRedirectURIs []string // ALLOWED_REDIRECT_URIS
	AllowedOrigins      []string // ALLOWED_ORIGINS
	ClientIPHeader      string   // CLIENT_IP_HEADER
	LogLevel            slog.Level
}

// fake reports whether no Cognito is configured, so the examples run the
// fake one from cognitotest.
func (c config) fake() bool { return c.UserPoolID == "" && c.IssuerURL == "" }

// configError is a configuration mistake: the command exits 2.
type configError string

func (e configError) Error() string { return string(e) }

func configErrorf(format string, args ...any) error { return configError(fmt.Sprintf(format, args...)) }

const redisURLError = "REDIS_URL: not a redis://[user:password@]host:port[/db] or rediss:// URL"

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
	if err := c.loadCognito(); err != nil {
		return config{}, err
	}
	if err := c.loadAddress(env("BASE_URL"), env("ADDR")); err != nil {
		return config{}, err
	}
	var err error
	if c.SigningKey, err = decodeKey("JWT_SIGNING_KEY", env("JWT_SIGNING_KEY"), 32, false); err != nil {
		return config{}, err
	}
	if c.EncryptionKey, err = decodeKey("STORAGE_ENCRYPTION_KEY", env("STORAGE_ENCRYPTION_KEY"), 32, true); err != nil {
		return config{}, err
	}
	if c.MasterSecret, err = decodeKey("COGNITOMCP_MASTER_SECRET", env("COGNITOMCP_MASTER_SECRET"), 32, false); err != nil {
		return config{}, err
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return config{}, configError(redisURLError) // not err: it may quote the password
		}
	}
	if lvl := env("LOG_LEVEL"); lvl != "" {
		if err := c.LogLevel.UnmarshalText([]byte(lvl)); err != nil {
			return config{}, configErrorf("LOG_LEVEL: %q is not debug, info, warn or error", lvl)
		}
	}
	return c, nil
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

// headerClientIP is ProxyConfig.ClientIP for CLIENT_IP_HEADER: the last
// address in the header (the one the proxy in front added; those before it
// are the client's to invent), or r.RemoteAddr's host when there is none.
func headerClientIP(name string) func(*http.Request) string {
	return func(r *http.Request) string {
		if vs := r.Header.Values(name); len(vs) > 0 {
			last := vs[len(vs)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return a.Unmap().String()
			}
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
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
	if i := strings.Index(raw[:at], "://"); i >= 0 {
		scheme = raw[:i+len("://")]
	}
	return scheme + "xxxxx" + raw[at:]
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
