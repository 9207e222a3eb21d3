package demo

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadConfig(t *testing.T) {
	key32 := bytes.Repeat([]byte{0xab}, 32)
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	b64 := base64.StdEncoding.EncodeToString
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
	// prod is what a deployment off loopback needs: a real pool and fixed keys.
	prod := with(real, "COGNITOMCP_MASTER_SECRET", b64(key(9)))
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
			assert.Nil(t, c.SigningKeys)
			assert.True(t, c.generatesKeys())
			assert.Equal(t, slog.LevelInfo, c.LogLevel)
			assert.False(t, c.LogJSON, "text logs")
			assert.Zero(t, c.ShutdownDelay)
			assert.Equal(t, 20*time.Second, c.ShutdownTimeout, "outlasts a 15 s Cognito call")
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

		{name: "https BASE_URL: plain HTTP on :8000 behind the TLS proxy", env: with(prod, "BASE_URL", "https://mcp.example.com/"),
			check: func(t *testing.T, c config) {
				assert.Equal(t, "https://mcp.example.com", c.BaseURL)
				assert.Equal(t, ":8000", c.Addr)
			}},
		{name: "https BASE_URL with port and path", env: with(prod, "BASE_URL", "https://mcp.example.com:8443/tools"),
			check: func(t *testing.T, c config) {
				assert.Equal(t, "https://mcp.example.com:8443/tools", c.BaseURL)
				assert.Equal(t, ":8000", c.Addr)
			}},
		{name: "http localhost BASE_URL without port", env: map[string]string{"BASE_URL": "http://localhost"},
			check: func(t *testing.T, c config) { assert.Equal(t, "localhost:80", c.Addr) }},
		{name: "loopback BASE_URL listens on loopback", env: map[string]string{"BASE_URL": "http://127.0.0.1:9000"},
			check: func(t *testing.T, c config) { assert.Equal(t, "127.0.0.1:9000", c.Addr) }},
		{name: "BASE_URL and ADDR", env: with(prod, "BASE_URL", "https://mcp.example.com", "ADDR", "10.0.0.5:9000"),
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
		{name: "BASE_URL without a scheme, :// in its password", env: map[string]string{"BASE_URL": "ops:PW-://s3cret@mcp.example.com"},
			wantErr: `BASE_URL: "xxxxx@mcp.example.com" is not an absolute URL without userinfo, query or fragment`},
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

		// Off loopback (a deployment), the fake Cognito and generated keys
		// are refused: anyone could sign in, and every restart or rolling
		// deploy would end every sign-in. On loopback both still run.
		{name: "public BASE_URL with the fake Cognito", env: map[string]string{"BASE_URL": "https://public.example", "COGNITOMCP_MASTER_SECRET": b64(key(9))},
			wantErr: `COGNITO_USER_POOL_ID (or COGNITO_ISSUER_URL) is required when BASE_URL ("https://public.example") is not on loopback: the fake Cognito is for local runs only`},
		{name: "public BASE_URL without keys", env: with(real, "BASE_URL", "https://public.example"),
			wantErr: `COGNITOMCP_MASTER_SECRET, or JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY, are required when BASE_URL ("https://public.example") is not on loopback: keys generated at start die with the process and differ between replicas (make one with: openssl rand -base64 32)`},
		{name: "public BASE_URL with a signing key only", env: with(real, "BASE_URL", "https://public.example", "JWT_SIGNING_KEY", b64(key(1))),
			wantErr: `COGNITOMCP_MASTER_SECRET, or JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY, are required when BASE_URL ("https://public.example") is not on loopback: keys generated at start die with the process and differ between replicas (make one with: openssl rand -base64 32)`},
		{name: "public BASE_URL and REDIS_URL without keys", env: with(real, "BASE_URL", "https://public.example", "REDIS_URL", "redis://redis:6379/0"),
			wantErr: `COGNITOMCP_MASTER_SECRET, or JWT_SIGNING_KEY and STORAGE_ENCRYPTION_KEY, are required when BASE_URL ("https://public.example") is not on loopback: keys generated at start die with the process and differ between replicas (make one with: openssl rand -base64 32)`},
		{name: "public BASE_URL with signing and encryption keys", env: with(real, "BASE_URL", "https://public.example",
			"JWT_SIGNING_KEY", b64(key(1)), "STORAGE_ENCRYPTION_KEY", b64(key(2))),
			check: func(t *testing.T, c config) { assert.False(t, c.generatesKeys()) }},
		{name: "https localhost BASE_URL: the fake and generated keys", env: map[string]string{"BASE_URL": "https://localhost:8443"},
			check: func(t *testing.T, c config) { assert.True(t, c.fake() && c.generatesKeys()) }},
		{name: "loopback BASE_URL and REDIS_URL without keys: a warning, as documented", env: map[string]string{"BASE_URL": "http://127.0.0.1:8000", "REDIS_URL": "redis://localhost:6379/0"},
			check: func(t *testing.T, c config) { assert.True(t, c.fake() && c.generatesKeys()) }},

		{name: "hex and base64 keys", env: map[string]string{"JWT_SIGNING_KEY": hex.EncodeToString(key32),
			"STORAGE_ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(key32), "COGNITOMCP_MASTER_SECRET": base64.RawURLEncoding.EncodeToString(key32)},
			check: func(t *testing.T, c config) {
				assert.Equal(t, [][]byte{key32}, c.SigningKeys)
				assert.Equal(t, [][]byte{key32}, c.EncryptionKeys)
				assert.Equal(t, key32, c.MasterSecret)
			}},
		// Key lists, for rotation: the first key signs or seals.
		{name: "key lists keep their order", env: map[string]string{"JWT_SIGNING_KEY": b64(key(2)) + " , " + hex.EncodeToString(key(1)),
			"STORAGE_ENCRYPTION_KEY": b64(key(3)) + "," + b64(key(4)) + "," + b64(key(5))},
			check: func(t *testing.T, c config) {
				assert.Equal(t, [][]byte{key(2), key(1)}, c.SigningKeys)
				assert.Equal(t, [][]byte{key(3), key(4), key(5)}, c.EncryptionKeys)
			}},
		{name: "a short key in a list", env: map[string]string{"JWT_SIGNING_KEY": b64(key(1)) + "," + b64(key(2)[:16])},
			wantErr: "JWT_SIGNING_KEY (key 2 of 2): decodes to 16 bytes, want at least 32 (make one with: openssl rand -base64 32)"},
		{name: "an empty key in a list", env: map[string]string{"STORAGE_ENCRYPTION_KEY": b64(key(1)) + ",,"},
			wantErr: "STORAGE_ENCRYPTION_KEY (key 2 of 3): empty; separate keys with single commas"},
		{name: "a key twice in a list", env: map[string]string{"JWT_SIGNING_KEY": b64(key(1)) + "," + hex.EncodeToString(key(1))},
			wantErr: "JWT_SIGNING_KEY (key 2 of 2): the same key as key 1"},
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
			check: func(t *testing.T, c config) {
				assert.Equal(t, "X-Forwarded-For", c.ClientIPHeader)
				assert.Equal(t, 1, c.ClientIPHops, "one proxy in front by default")
			}},
		{name: "two proxies in front", env: map[string]string{"CLIENT_IP_HEADER": "X-Forwarded-For", "CLIENT_IP_HOPS": "2"},
			check: func(t *testing.T, c config) { assert.Equal(t, 2, c.ClientIPHops) }},
		{name: "no proxy in front", env: map[string]string{"CLIENT_IP_HEADER": "X-Forwarded-For", "CLIENT_IP_HOPS": "0"},
			wantErr: `CLIENT_IP_HOPS: "0" is not a number of proxies from 1 to 10`},
		{name: "client IP header that is no header name", env: map[string]string{"CLIENT_IP_HEADER": "X-Forwarded-For: 1.2.3.4"},
			wantErr: `CLIENT_IP_HEADER: "X-Forwarded-For: 1.2.3.4" is not a header name, e.g. X-Forwarded-For`},
		{name: "bad log level", env: map[string]string{"LOG_LEVEL": "loud"},
			wantErr: `LOG_LEVEL: "loud" is not debug, info, warn or error`},
		{name: "JSON logs", env: map[string]string{"LOG_FORMAT": "JSON"},
			check: func(t *testing.T, c config) { assert.True(t, c.LogJSON) }},
		{name: "text logs", env: map[string]string{"LOG_FORMAT": "text"},
			check: func(t *testing.T, c config) { assert.False(t, c.LogJSON) }},
		{name: "bad log format", env: map[string]string{"LOG_FORMAT": "logfmt"},
			wantErr: `LOG_FORMAT: "logfmt" is not json or text`},

		{name: "shutdown delay and timeout", env: map[string]string{"SHUTDOWN_DELAY": "10s", "SHUTDOWN_TIMEOUT": "1m"},
			check: func(t *testing.T, c config) {
				assert.Equal(t, 10*time.Second, c.ShutdownDelay)
				assert.Equal(t, time.Minute, c.ShutdownTimeout)
			}},
		{name: "shutdown delay in seconds", env: map[string]string{"SHUTDOWN_DELAY": "7"},
			check: func(t *testing.T, c config) { assert.Equal(t, 7*time.Second, c.ShutdownDelay) }},
		{name: "negative shutdown delay", env: map[string]string{"SHUTDOWN_DELAY": "-1s"},
			wantErr: `SHUTDOWN_DELAY: "-1s" is not a duration, e.g. 10s`},
		{name: "shutdown timeout not a duration", env: map[string]string{"SHUTDOWN_TIMEOUT": "soon"},
			wantErr: `SHUTDOWN_TIMEOUT: "soon" is not a duration, e.g. 10s`},

		{name: "Sentinel REDIS_URL", env: map[string]string{"REDIS_URL": "redis://sentinel-0:26379/0?master_name=mymaster&addr=sentinel-1:26379&read_timeout=1s"},
			check: func(t *testing.T, c config) { assert.Contains(t, c.RedisURL, "master_name=mymaster") }},
		{name: "REDIS_URL not redis", env: map[string]string{"REDIS_URL": "http://redis:6379"}, wantErr: redisURLError},
		// go-redis's own error would quote the option, and the URL may hold a password.
		{name: "REDIS_URL with an unknown option", env: map[string]string{"REDIS_URL": "redis://:PW-s3cret@redis:6379/0?read_timout=1s"}, wantErr: redisURLError},
		{name: "Sentinel REDIS_URL with an unknown option", env: map[string]string{"REDIS_URL": "redis://:PW-s3cret@sentinel:26379/0?master_name=m&sentinel_pasword=x"}, wantErr: redisURLError},
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

// TestParseRedisURL: REDIS_URL with master_name names Sentinels (a failover
// client, which follows the master they elect), without it one server;
// either way go-redis's query options (timeouts, retries) apply. Parsing
// only: nothing is dialed.
func TestParseRedisURL(t *testing.T) {
	t.Run("one server", func(t *testing.T) {
		o, fo, err := parseRedisURL("rediss://app:pw@redis.internal:6380/2?read_timeout=1s&write_timeout=1s&dial_timeout=2s&max_retries=1")
		require.NoError(t, err)
		require.Nil(t, fo)
		require.NotNil(t, o)
		assert.Equal(t, "redis.internal:6380", o.Addr)
		assert.Equal(t, "pw", o.Password)
		assert.Equal(t, 2, o.DB)
		assert.NotNil(t, o.TLSConfig)
		assert.Equal(t, time.Second, o.ReadTimeout)
		assert.Equal(t, time.Second, o.WriteTimeout)
		assert.Equal(t, 2*time.Second, o.DialTimeout)
		assert.Equal(t, 1, o.MaxRetries)
	})
	t.Run("Sentinels", func(t *testing.T) {
		o, fo, err := parseRedisURL("redis://sentinel-0:26379/1?master_name=mymaster&addr=sentinel-1:26379&addr=sentinel-2:26379&password=master-pw&read_timeout=1s&write_timeout=1s")
		require.NoError(t, err)
		require.Nil(t, o)
		require.NotNil(t, fo)
		assert.Equal(t, "mymaster", fo.MasterName)
		assert.Equal(t, []string{"sentinel-0:26379", "sentinel-1:26379", "sentinel-2:26379"}, fo.SentinelAddrs)
		assert.Equal(t, "master-pw", fo.Password)
		assert.Equal(t, 1, fo.DB)
		assert.Equal(t, time.Second, fo.ReadTimeout)
		assert.Equal(t, time.Second, fo.WriteTimeout)
	})
	t.Run("an empty master_name is no Sentinel URL", func(t *testing.T) {
		_, _, err := parseRedisURL("redis://redis:6379/0?master_name=")
		assert.Error(t, err)
	})
}

func TestWithEnvHint(t *testing.T) {
	err := withEnvHint(errors.New(`cognitomcp: ProxyConfig.AllowedRedirectURIs: "x" is not a valid pattern`))
	assert.True(t, errors.As(err, new(configError)))
	assert.True(t, strings.HasPrefix(err.Error(), "ALLOWED_REDIRECT_URIS: cognitomcp: ProxyConfig.AllowedRedirectURIs:"), err.Error())

	err = withEnvHint(errors.New("cognitomcp: discovery at https://x: unavailable"))
	assert.False(t, errors.As(err, new(configError)), "not a configuration error: exit 1")
}
