package demo

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadConfig(t *testing.T) {
	key32 := bytes.Repeat([]byte{0xab}, 32)
	real := map[string]string{"COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf123", "COGNITO_CLIENT_ID": "app"}
	with := func(base map[string]string, kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c config)
		wantErr string
	}{
		{name: "nothing set: fake Cognito on localhost:8000", env: nil, check: func(t *testing.T, c config) {
			assert.True(t, c.fake())
			assert.Equal(t, "localhost:8000", c.Addr)
			assert.Empty(t, c.BaseURL, "follows the listener")
			assert.Nil(t, c.SigningKey)
			assert.Equal(t, slog.LevelInfo, c.LogLevel)
		}},
		{name: "real pool", env: with(real, "COGNITO_CLIENT_SECRET", "s3cret", "COGNITO_REGION", "eu-west-1",
			"COGNITO_DOMAIN", "https://myapp.auth.eu-west-1.amazoncognito.com", "COGNITO_SCOPES", " openid  mcp-api/tools "),
			check: func(t *testing.T, c config) {
				assert.False(t, c.fake())
				assert.Equal(t, "eu-west-1_AbCdEf123", c.UserPoolID)
				assert.Equal(t, "app", c.ClientID)
				assert.Equal(t, "s3cret", c.ClientSecret)
				assert.Equal(t, "https://myapp.auth.eu-west-1.amazoncognito.com", c.DomainURL)
				assert.Equal(t, []string{"openid", "mcp-api/tools"}, c.Scopes)
			}},
		{name: "emulator by issuer URL", env: map[string]string{"COGNITO_ISSUER_URL": "http://localhost:9229/local_pool", "COGNITO_CLIENT_ID": "app"},
			check: func(t *testing.T, c config) { assert.False(t, c.fake()) }},
		{name: "pool without client id", env: map[string]string{"COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf123"},
			wantErr: "COGNITO_CLIENT_ID is required when COGNITO_USER_POOL_ID is set"},
		{name: "issuer URL without client id", env: map[string]string{"COGNITO_ISSUER_URL": "http://localhost:9229/p"},
			wantErr: "COGNITO_CLIENT_ID is required when COGNITO_ISSUER_URL is set"},
		{name: "client id without pool", env: map[string]string{"COGNITO_CLIENT_ID": "app"},
			wantErr: "COGNITO_CLIENT_ID is set but COGNITO_USER_POOL_ID is not; set COGNITO_USER_POOL_ID, or unset COGNITO_CLIENT_ID to run the fake Cognito"},
		{name: "malformed pool id", env: with(real, "COGNITO_USER_POOL_ID", "AbCdEf123"),
			wantErr: `COGNITO_USER_POOL_ID: "AbCdEf123" is not of the form {region}_{id}, e.g. eu-west-1_AbCdEf123`},
		{name: "region mismatch", env: with(real, "COGNITO_REGION", "us-east-1"),
			wantErr: `COGNITO_REGION: "us-east-1" does not match the region of COGNITO_USER_POOL_ID ("eu-west-1")`},
		{name: "domain not a URL", env: with(real, "COGNITO_DOMAIN", "myapp.auth.eu-west-1.amazoncognito.com"),
			wantErr: `COGNITO_DOMAIN: "myapp.auth.eu-west-1.amazoncognito.com" is not an absolute http(s) URL`},

		{name: "https BASE_URL: plain HTTP on :8000 behind the TLS proxy", env: map[string]string{"BASE_URL": "https://mcp.example.com/"},
			check: func(t *testing.T, c config) {
				assert.Equal(t, "https://mcp.example.com", c.BaseURL)
				assert.Equal(t, ":8000", c.Addr)
			}},
		{name: "https BASE_URL with port and path", env: map[string]string{"BASE_URL": "https://mcp.example.com:8443/tools"},
			check: func(t *testing.T, c config) {
				assert.Equal(t, "https://mcp.example.com:8443/tools", c.BaseURL)
				assert.Equal(t, ":8000", c.Addr)
			}},
		{name: "http localhost BASE_URL without port", env: map[string]string{"BASE_URL": "http://localhost"},
			check: func(t *testing.T, c config) { assert.Equal(t, "localhost:80", c.Addr) }},
		{name: "loopback BASE_URL listens on loopback", env: map[string]string{"BASE_URL": "http://127.0.0.1:9000"},
			check: func(t *testing.T, c config) { assert.Equal(t, "127.0.0.1:9000", c.Addr) }},
		{name: "BASE_URL and ADDR", env: map[string]string{"BASE_URL": "https://mcp.example.com", "ADDR": "10.0.0.5:9000"},
			check: func(t *testing.T, c config) { assert.Equal(t, "10.0.0.5:9000", c.Addr) }},
		{name: "ADDR port 0 without BASE_URL", env: map[string]string{"ADDR": "127.0.0.1:0"},
			check: func(t *testing.T, c config) {
				assert.Equal(t, "127.0.0.1:0", c.Addr)
				assert.Empty(t, c.BaseURL)
			}},
		{name: "plain http BASE_URL off loopback", env: map[string]string{"BASE_URL": "http://mcp.example.com"},
			wantErr: `BASE_URL: "http://mcp.example.com" must be https (plain http only on localhost)`},
		{name: "BASE_URL with query", env: map[string]string{"BASE_URL": "https://mcp.example.com/?a=b"},
			wantErr: `BASE_URL: "https://mcp.example.com/?a=b" is not an absolute URL without userinfo, query or fragment`},
		{name: "BASE_URL relative", env: map[string]string{"BASE_URL": "/mcp"},
			wantErr: `BASE_URL: "/mcp" is not an absolute URL without userinfo, query or fragment`},
		// A password in a URL setting never reaches the error (which main
		// prints), whether or not the URL parses.
		{name: "BASE_URL with a password", env: map[string]string{"BASE_URL": "https://ops:PW-s3cret@mcp.example.com"},
			wantErr: `BASE_URL: "https://xxxxx@mcp.example.com" is not an absolute URL without userinfo, query or fragment`},
		{name: "http BASE_URL with a password holding a slash", env: map[string]string{"BASE_URL": "http://ops:12/PW-s3cret@mcp.example.com"},
			wantErr: `BASE_URL: "http://xxxxx@mcp.example.com" must be https (plain http only on localhost)`},
		{name: "issuer URL with a password, not http(s)", env: map[string]string{"COGNITO_ISSUER_URL": "ftp://ops:PW-s3cret@cognito.example.com/p", "COGNITO_CLIENT_ID": "app"},
			wantErr: `COGNITO_ISSUER_URL: "ftp://xxxxx@cognito.example.com/p" is not an absolute http(s) URL`},
		{name: "domain with a password that does not parse", env: with(real, "COGNITO_DOMAIN", "https://ops:PW%zz@myapp.auth.eu-west-1.amazoncognito.com"),
			wantErr: `COGNITO_DOMAIN: "https://xxxxx@myapp.auth.eu-west-1.amazoncognito.com" is not an absolute http(s) URL`},
		{name: "ADDR without port", env: map[string]string{"ADDR": "localhost"},
			wantErr: `ADDR: "localhost" is not host:port, e.g. localhost:8000 or :8000`},
		{name: "ADDR off loopback without BASE_URL", env: map[string]string{"ADDR": "10.0.0.5:8000"},
			wantErr: `BASE_URL is required when ADDR ("10.0.0.5:8000") is not a loopback address: the public URL must be https, or http on localhost`},

		{name: "hex and base64 keys", env: map[string]string{"JWT_SIGNING_KEY": hex.EncodeToString(key32),
			"STORAGE_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(key32), "COGNITOMCP_MASTER_SECRET": base64.RawURLEncoding.EncodeToString(key32)},
			check: func(t *testing.T, c config) {
				assert.Equal(t, key32, c.SigningKey)
				assert.Equal(t, key32, c.EncryptionKey)
				assert.Equal(t, key32, c.MasterSecret)
			}},
		{name: "short signing key", env: map[string]string{"JWT_SIGNING_KEY": base64.StdEncoding.EncodeToString(key32[:16])},
			wantErr: "JWT_SIGNING_KEY: decodes to 16 bytes, want at least 32 (make one with: openssl rand -base64 32)"},
		{name: "encryption key not 32 bytes", env: map[string]string{"STORAGE_ENCRYPTION_KEY": hex.EncodeToString(append(key32, 1))},
			wantErr: "STORAGE_ENCRYPTION_KEY: decodes to 33 bytes, want exactly 32 (make one with: openssl rand -base64 32)"},
		{name: "master secret not encoded", env: map[string]string{"COGNITOMCP_MASTER_SECRET": "correct horse battery staple!!!!"},
			wantErr: "COGNITOMCP_MASTER_SECRET: not valid base64 or hex (make one with: openssl rand -base64 32)"},

		{name: "auto-login a demo user", env: map[string]string{"DEMO_AUTO_LOGIN": "alice"},
			check: func(t *testing.T, c config) { assert.Equal(t, "alice", c.AutoLogin) }},
		{name: "auto-login someone else", env: map[string]string{"DEMO_AUTO_LOGIN": "carol"},
			wantErr: `DEMO_AUTO_LOGIN: "carol" is not a demo user (alice, bob)`},
		{name: "auto-login with a real pool", env: with(real, "DEMO_AUTO_LOGIN", "alice"),
			wantErr: "DEMO_AUTO_LOGIN works only with the fake Cognito; unset it or unset COGNITO_USER_POOL_ID"},

		{name: "lists, redis and log level", env: map[string]string{"ALLOWED_REDIRECT_URIS": "https://claude.ai/api/mcp/auth_callback  cursor://anysphere.cursor-mcp/oauth/callback",
			"ALLOWED_ORIGINS": "http://localhost:6274", "REDIS_URL": "redis://localhost:6379/0", "LOG_LEVEL": "DEBUG"},
			check: func(t *testing.T, c config) {
				assert.Equal(t, []string{"https://claude.ai/api/mcp/auth_callback", "cursor://anysphere.cursor-mcp/oauth/callback"}, c.AllowedRedirectURIs)
				assert.Equal(t, []string{"http://localhost:6274"}, c.AllowedOrigins)
				assert.Equal(t, "redis://localhost:6379/0", c.RedisURL)
				assert.Equal(t, slog.LevelDebug, c.LogLevel)
			}},
		{name: "client IP header", env: map[string]string{"CLIENT_IP_HEADER": "X-Forwarded-For"},
			check: func(t *testing.T, c config) { assert.Equal(t, "X-Forwarded-For", c.ClientIPHeader) }},
		{name: "client IP header that is no header name", env: map[string]string{"CLIENT_IP_HEADER": "X-Forwarded-For: 1.2.3.4"},
			wantErr: `CLIENT_IP_HEADER: "X-Forwarded-For: 1.2.3.4" is not a header name, e.g. X-Forwarded-For`},
		{name: "bad log level", env: map[string]string{"LOG_LEVEL": "loud"},
			wantErr: `LOG_LEVEL: "loud" is not debug, info, warn or error`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantErr, err.Error())
				assert.True(t, errors.As(err, new(configError)), "exits 2")
				assert.NotContains(t, err.Error(), "\n", "one line")
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

// TestHeaderClientIP: the last address of the header, which the proxy in
// front added (a client's own entries before it are ignored), or the
// connection's address when the header is missing or holds no address.
func TestHeaderClientIP(t *testing.T) {
	ip := headerClientIP("X-Forwarded-For")
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{"203.0.113.7"}, "203.0.113.7"},
		{[]string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7"},
		{[]string{"6.6.6.6", "203.0.113.7"}, "203.0.113.7"},
		{[]string{"2001:db8::1"}, "2001:db8::1"},
		{[]string{"::ffff:203.0.113.7"}, "203.0.113.7"},
		{[]string{"not an address"}, "192.0.2.1"},
		{nil, "192.0.2.1"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil) // RemoteAddr 192.0.2.1:1234
		for _, v := range tc.values {
			r.Header.Add("X-Forwarded-For", v)
		}
		assert.Equal(t, tc.want, ip(r), "%q", tc.values)
	}
}

func TestFollowURL(t *testing.T) {
	tests := []struct{ addr, bound, want string }{
		{"127.0.0.1:0", "127.0.0.1:41234", "http://127.0.0.1:41234"},
		{"localhost:8000", "127.0.0.1:8000", "http://localhost:8000"},
		{":0", "[::]:41234", "http://localhost:41234"},
		{"0.0.0.0:8000", "0.0.0.0:8000", "http://localhost:8000"},
		{"[::1]:0", "[::1]:41234", "http://[::1]:41234"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			bound, err := net.ResolveTCPAddr("tcp", tc.bound)
			require.NoError(t, err)
			assert.Equal(t, tc.want, followURL(tc.addr, bound))
		})
	}
}

func TestWithEnvHint(t *testing.T) {
	err := withEnvHint(errors.New(`cognitomcp: ProxyConfig.AllowedRedirectURIs: "x" is not a valid pattern`))
	assert.True(t, errors.As(err, new(configError)))
	assert.True(t, strings.HasPrefix(err.Error(), "ALLOWED_REDIRECT_URIS: cognitomcp: ProxyConfig.AllowedRedirectURIs:"), err.Error())

	err = withEnvHint(errors.New("cognitomcp: discovery at https://x: unavailable"))
	assert.False(t, errors.As(err, new(configError)), "not a configuration error: exit 1")
}
