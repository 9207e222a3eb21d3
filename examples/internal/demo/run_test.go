package demo

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cognitomcp/cognitomcp"
)

// TestSetKeys: fixed keys give every process the same keys, the cookie key
// included (replicas sharing REDIS_URL, or a restart, accept each other's
// sign-in and consent cookies), and generated reports exactly when some key
// is random.
func TestSetKeys(t *testing.T) {
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	tests := []struct {
		name      string
		cfg       config
		generated bool
	}{
		{"nothing set", config{}, true},
		{"master secret", config{MasterSecret: key(3)}, false},
		{"signing and encryption keys: cookie key derived from them", config{SigningKey: key(1), EncryptionKey: key(2)}, false},
		{"all three", config{SigningKey: key(1), EncryptionKey: key(2), MasterSecret: key(3)}, false},
		{"signing key only", config{SigningKey: key(1)}, true},
		{"encryption key only", config{EncryptionKey: key(2)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := func() cognitomcp.KeyConfig { // the keys of one process
				t.Helper()
				var pcfg cognitomcp.ProxyConfig
				generated, err := setKeys(tc.cfg, &pcfg)
				require.NoError(t, err)
				assert.Equal(t, tc.generated, generated)
				keys, err := pcfg.Keys.Expanded() // as NewProxy validates and derives them
				require.NoError(t, err)
				return keys
			}
			a, b := start(), start()
			if tc.generated {
				assert.NotEqual(t, a.CookieKeys, b.CookieKeys)
			} else {
				assert.Equal(t, a, b, "another replica, or a restart, has the same keys")
			}
		})
	}

	t.Run("a new signing key is a new cookie key", func(t *testing.T) {
		k1, err := cookieKeyOf(key(1), key(2))
		require.NoError(t, err)
		k2, err := cookieKeyOf(key(4), key(2))
		require.NoError(t, err)
		assert.NotEqual(t, k1, k2)
	})
}
