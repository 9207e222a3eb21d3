package cognitomcp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testRedirectPatterns are the allow-list patterns of the redirect tables.
var testRedirectPatterns = []string{
	"cursor://anysphere.cursor-mcp/oauth/callback",
	"http://*.dev.example/cb",
	"http://build.internal:8080/ci/*/callback",
	"com.example.app:/oauth2redirect",
	"http://pr-*.preview.example/cb?mode=mcp",
}

func mustPatterns(t testing.TB, raw ...string) []redirectPattern {
	t.Helper()
	p, err := compileRedirectPatterns(raw)
	require.NoError(t, err)
	return p
}

// TestRedirectValidation is the registration attack matrix (design §5).
func TestRedirectValidation(t *testing.T) {
	pats := mustPatterns(t, testRedirectPatterns...)
	cases := []struct {
		name string
		uri  string
		ok   bool
	}{
		// Accepted by default.
		{"https URL", "https://claude.ai/api/mcp/auth_callback", true},
		{"https with query", "https://app.example/cb?x=1&y=2", true},
		{"https with encoded slash in query only", "https://app.example/cb?next=%2Fhome", true},
		{"https without path", "https://app.example", true},
		{"http localhost with port", "http://localhost:8976/callback", true},
		{"http localhost without port", "http://localhost/callback", true},
		{"http 127.0.0.1", "http://127.0.0.1:6276/oauth/callback", true},
		{"http anywhere in 127/8", "http://127.5.6.7:9/cb", true},
		{"http IPv6 loopback", "http://[::1]:8080/cb", true},
		{"mixed-case scheme and host at registration", "HTTPS://App.EXAMPLE/cb", true},
		{"mixed-case http localhost", "HTTP://LocalHost:3000/cb", true},
		{"punycode host over https", "https://xn--80ak6aa92e.com/cb", true},
		{"localhost.evil.example over https is a normal host", "https://localhost.evil.example/cb", true},
		{"segment merely starting with dots", "https://app.example/..foo/.bar", true},
		{"ordinary percent-encoding", "https://app.example/a%20b", true},
		// Accepted through a pattern only.
		{"custom scheme matching a pattern", "cursor://anysphere.cursor-mcp/oauth/callback", true},
		{"reverse-domain scheme matching a pattern", "com.example.app:/oauth2redirect", true},
		{"wildcard host label", "http://alice.dev.example/cb", true},
		{"wildcard path segment", "http://build.internal:8080/ci/42/callback", true},
		{"partial wildcard label and exact query", "http://pr-17.preview.example/cb?mode=mcp", true},

		// Never: shape.
		{"empty", "", false},
		{"relative path", "/callback", false},
		{"scheme-relative", "//app.example/cb", false},
		{"host:port without scheme", "localhost:8080/cb", false},
		{"unparsable IPv6", "http://[::1/cb", false},
		{"opaque URN", "urn:ietf:wg:oauth:2.0:oob", false},
		{"https with empty host", "https:///cb", false},
		{"http with empty host", "http://:8080/cb", false},
		{"empty port", "http://localhost:/cb", false},
		{"port out of range", "http://localhost:99999/cb", false},
		{"port with leading zero", "http://localhost:08080/cb", false},
		{"IPv6 zone", "http://[fe80::1%25eth0]/cb", false},
		{"too long", "https://app.example/" + strings.Repeat("a", maxRedirectURILen), false},
		{"angle bracket", "https://app.example/<cb>", false},
		{"square bracket in path", "https://app.example/[cb]", false},
		{"malformed escape", "https://app.example/%zz", false},
		// Never: userinfo.
		{"userinfo", "https://user@app.example/cb", false},
		{"userinfo with password", "https://user:pw@app.example/cb", false},
		{"localhost as userinfo", "http://localhost@evil.example/cb", false},
		{"loopback as userinfo with port", "http://127.0.0.1:80@evil.example/cb", false},
		// Never: fragments.
		{"fragment", "https://app.example/cb#frag", false},
		{"empty fragment", "https://app.example/cb#", false},
		// Never: dot segments, raw and encoded in every case.
		{"raw dot-dot", "https://app.example/cb/../admin", false},
		{"raw dot", "https://app.example/./cb", false},
		{"trailing dot-dot", "https://app.example/cb/..", false},
		{"loopback dot-dot", "http://127.0.0.1:8080/cb/../x", false},
		{"encoded dot-dot lower", "https://app.example/cb/%2e%2e/admin", false},
		{"encoded dot-dot upper", "https://app.example/cb/%2E%2E/admin", false},
		{"encoded dot-dot mixed 1", "https://app.example/cb/%2e%2E/admin", false},
		{"encoded dot-dot mixed 2", "https://app.example/cb/%2E%2e/admin", false},
		{"half-encoded dot-dot 1", "https://app.example/cb/.%2e/admin", false},
		{"half-encoded dot-dot 2", "https://app.example/cb/%2E./admin", false},
		{"encoded single dot", "https://app.example/%2e/cb", false},
		{"double-encoded dot-dot", "https://app.example/cb/%252e%252E/admin", false},
		{"dot segment in custom scheme", "cursor://anysphere.cursor-mcp/oauth/../callback", false},
		{"encoded slash lower", "https://app.example/cb%2f..%2fadmin", false},
		{"encoded slash upper", "https://app.example/cb%2F..%2Fadmin", false},
		{"double-encoded slash", "https://app.example/cb%252fadmin", false},
		{"encoded backslash", "https://app.example/cb%5c..%5Cadmin", false},
		{"encoded NUL", "https://app.example/cb%00.html", false},
		{"overlong UTF-8 dot", "https://app.example/%c0%ae%c0%ae/admin", false},
		// Never: backslashes, controls, whitespace.
		{"backslash in authority", `https://app.example\@evil.example/cb`, false},
		{"backslash after loopback", `http://localhost\evil.example/cb`, false},
		{"backslash in path", `https://app.example/cb\..\admin`, false},
		{"newline", "https://app.example/c\nb", false},
		{"tab", "https://app.example/c\tb", false},
		{"NUL", "https://app.example/c\x00b", false},
		{"DEL", "https://app.example/c\x7fb", false},
		{"space", "https://app.example/c b", false},
		{"leading space", " https://app.example/cb", false},
		// Never: dangerous schemes, any case.
		{"javascript", "javascript:alert(1)", false},
		{"JavaScript mixed case", "JavaScript:alert(1)", false},
		{"javascript with slashes", "JAVASCRIPT://app.example/%0aalert(1)", false},
		{"data", "data:text/html,<script>alert(1)</script>", false},
		{"data upper", "DATA:text/html;base64,PHNjcmlwdD4=", false},
		{"file", "file:///etc/passwd", false},
		{"file mixed case", "FiLe://localhost/etc/passwd", false},
		{"vbscript", "vbscript:msgbox(1)", false},
		{"vbscript mixed case", "VbScRiPt:msgbox(1)", false},
		// Never: unicode hosts (IDN must be punycode).
		{"unicode host", "https://пример.com/cb", false},
		{"homoglyph localhost", "http://lоcalhost/cb", false},
		{"percent-encoded host", "https://%6c%6fcalhost/cb", false},
		{"non-ASCII path", "https://app.example/caf\u00e9", false},
		// Not loopback, so no http.
		{"http on a public host", "http://app.example/cb", false},
		{"http localhost.evil.example", "http://localhost.evil.example/cb", false},
		{"http localhost with trailing dot", "http://localhost./cb", false},
		{"http 0.0.0.0", "http://0.0.0.0:8080/cb", false},
		{"https 0.0.0.0", "https://0.0.0.0/cb", false},
		{"http IPv6 unspecified", "http://[::]:8080/cb", false},
		{"http IPv4-mapped loopback", "http://[::ffff:127.0.0.1]/cb", false},
		{"http short-form loopback", "http://127.1/cb", false},
		{"http decimal loopback", "http://2130706433/cb", false},
		{"http hex loopback", "http://0x7f.0.0.1/cb", false},
		{"http private address", "http://10.0.0.1/cb", false},
		// Custom schemes need a pattern, and must match it.
		{"custom scheme without pattern", "vscode://vscode.github-authentication/did-authenticate", false},
		{"custom scheme other path", "cursor://anysphere.cursor-mcp/oauth/other", false},
		{"wildcard does not match the apex", "http://dev.example/cb", false},
		{"wildcard matches one label only", "http://a.b.dev.example/cb", false},
		{"wildcard segment matches one segment only", "http://build.internal:8080/ci/4/2/callback", false},
		{"pattern port must match", "http://build.internal:9090/ci/42/callback", false},
		{"pattern query must match", "http://pr-17.preview.example/cb?mode=other", false},
		{"pattern without query refuses one", "http://alice.dev.example/cb?x=1", false},
		// Never: a query holding what the proxy adds to it (RFC 6749 §4.1.2,
		// RFC 9207): the client would get two of it.
		{"query with code", "https://app.example/cb?code=x", false},
		{"query with iss", "https://app.example/cb?a=1&iss=https://evil.example", false},
		{"query with state, encoded", "https://app.example/cb?st%61te=x", false},
		{"query with error_description", "https://app.example/cb?error_description", false},
		{"query with other parameters", "https://app.example/cb?tenant=a&codes=1&x_state=2", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validateRedirectURI(tc.uri, pats)
			if tc.ok {
				assert.NoError(t, err)
				return
			}
			if assert.Error(t, err) {
				assert.ErrorIs(t, err, errRedirectURI)
				assert.Less(t, len(err.Error()), 300, "the message must not echo huge input")
			}
		})
	}
	t.Run("no patterns, no custom scheme", func(t *testing.T) {
		assert.Error(t, validateRedirectURI("cursor://anysphere.cursor-mcp/oauth/callback", nil))
	})
}

// TestRedirectPatternCompile checks that patterns obey the redirect rules.
func TestRedirectPatternCompile(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		ok      bool
	}{
		{"custom scheme", "cursor://anysphere.cursor-mcp/oauth/callback", true},
		{"wildcard subdomain", "https://*.example.com/cb", true},
		{"wildcard in label and segment", "http://pr-*.dev.example/*/cb", true},
		{"reverse-domain scheme", "com.example.app:/oauth2redirect", true},
		{"empty", "", false},
		{"blocked scheme", "javascript:*", false},
		{"blocked scheme with authority", "data://*.example/cb", false},
		{"wildcard scheme", "*://app.example/cb", false},
		{"wildcard host alone", "https://*/cb", false},
		{"wildcard top-level label", "https://example.*/cb", false},
		{"wildcard port", "http://app.example:*/cb", false},
		{"wildcard query", "https://app.example/cb?x=*", false},
		{"userinfo", "https://user@*.example.com/cb", false},
		{"fragment", "https://app.example/cb#*", false},
		{"dot segment", "https://app.example/*/../cb", false},
		{"backslash", `https://app.example\*/cb`, false},
		{"relative", "/cb", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileRedirectPatterns([]string{tc.pattern})
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestRedirectMatch is the /authorize check: exact, except loopback ports.
func TestRedirectMatch(t *testing.T) {
	cases := []struct {
		name       string
		registered []string
		requested  string
		want       string // "" means refused
	}{
		{"exact https", []string{"https://app.example/cb"}, "https://app.example/cb", "https://app.example/cb"},
		{"second registered", []string{"https://a.example/cb", "https://app.example/cb"}, "https://app.example/cb", "https://app.example/cb"},
		{"https other path", []string{"https://app.example/cb"}, "https://app.example/cb2", ""},
		{"https trailing slash", []string{"https://app.example/cb"}, "https://app.example/cb/", ""},
		{"https other port on a non-loopback host", []string{"https://app.example/cb"}, "https://app.example:8443/cb", ""},
		{"http other port on a non-loopback host", []string{"http://build.internal:8080/cb"}, "http://build.internal:9090/cb", ""},
		{"https loopback keeps its port", []string{"https://localhost:8443/cb"}, "https://localhost:9443/cb", ""},
		{"https case differs", []string{"https://app.example/cb"}, "https://APP.example/cb", ""},
		{"https query added", []string{"https://app.example/cb"}, "https://app.example/cb?x=1", ""},
		{"percent-encoding differs", []string{"https://app.example/cb"}, "https://app.example/c%62", ""},
		{"custom scheme exact", []string{"cursor://anysphere.cursor-mcp/oauth/callback"}, "cursor://anysphere.cursor-mcp/oauth/callback", "cursor://anysphere.cursor-mcp/oauth/callback"},
		{"loopback port added", []string{"http://127.0.0.1/callback"}, "http://127.0.0.1:54321/callback", "http://127.0.0.1:54321/callback"},
		{"loopback port changed", []string{"http://127.0.0.1:8976/callback"}, "http://127.0.0.1:33418/callback", "http://127.0.0.1:33418/callback"},
		{"loopback port dropped", []string{"http://127.0.0.1:8976/callback"}, "http://127.0.0.1/callback", "http://127.0.0.1/callback"},
		{"localhost any port", []string{"http://localhost/oauth/callback"}, "http://localhost:3334/oauth/callback", "http://localhost:3334/oauth/callback"},
		{"IPv6 loopback any port", []string{"http://[::1]:1/cb"}, "http://[::1]:2/cb", "http://[::1]:2/cb"},
		{"loopback same query", []string{"http://127.0.0.1/cb?a=1"}, "http://127.0.0.1:5/cb?a=1", "http://127.0.0.1:5/cb?a=1"},
		{"localhost is not 127.0.0.1", []string{"http://localhost:8080/cb"}, "http://127.0.0.1:8080/cb", ""},
		{"127.0.0.1 is not localhost", []string{"http://127.0.0.1/cb"}, "http://localhost:9/cb", ""},
		{"127.0.0.1 is not 127.0.0.2", []string{"http://127.0.0.1/cb"}, "http://127.0.0.2:9/cb", ""},
		{"IPv6 loopback is not 127.0.0.1", []string{"http://[::1]/cb"}, "http://127.0.0.1:9/cb", ""},
		{"loopback path differs", []string{"http://127.0.0.1/callback"}, "http://127.0.0.1:5/callback2", ""},
		{"loopback query differs", []string{"http://127.0.0.1/cb?a=1"}, "http://127.0.0.1:5/cb?a=2", ""},
		{"loopback query added", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:5/cb?a=1", ""},
		{"loopback host case differs", []string{"http://localhost/cb"}, "http://LOCALHOST:5/cb", ""},
		{"loopback scheme case differs", []string{"http://127.0.0.1/cb"}, "HTTP://127.0.0.1:5/cb", ""},
		{"loopback scheme differs", []string{"http://127.0.0.1/cb"}, "https://127.0.0.1:5/cb", ""},
		{"loopback with userinfo", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:80@evil.example/cb", ""},
		{"loopback with fragment", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:5/cb#x", ""},
		{"loopback with dot segments", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:5/x/../cb", ""},
		{"loopback port invalid", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:0/cb", ""},
		{"non-loopback lookalike", []string{"http://localhost/cb"}, "http://localhost.evil.example:5/cb", ""},
		{"empty request", []string{"https://app.example/cb"}, "", ""},
		{"nothing registered", nil, "http://127.0.0.1/cb", ""},
		{"huge request", []string{"https://app.example/cb"}, "https://app.example/" + strings.Repeat("x", 3000), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := matchRedirectURI(tc.registered, tc.requested)
			assert.Equal(t, tc.want != "", ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzValidateRedirectURI checks that whatever validateRedirectURI accepts
// is safe by another parser's reading, and that matching stays consistent.
func FuzzValidateRedirectURI(f *testing.F) {
	for _, s := range []string{
		"https://claude.ai/api/mcp/auth_callback",
		"http://127.0.0.1:8976/callback",
		"http://localhost/cb?x=1",
		"http://[::1]:1/cb",
		"cursor://anysphere.cursor-mcp/oauth/callback",
		"com.example.app:/oauth2redirect",
		"http://alice.dev.example/cb",
		"https://app.example/cb/%2e%2E/admin",
		"https://app.example/cb%252fadmin",
		"http://localhost@evil.example/cb",
		`https://app.example\@evil.example/cb`,
		"javascript:alert(1)",
		"http://[::ffff:127.0.0.1]/cb",
		"https://app.example/cb#frag",
		"http://0.0.0.0/cb",
		"https://пример.com/cb",
		strings.Repeat("\x9d", 2500), // the quoted echo in the error stays bounded
	} {
		f.Add(s)
	}
	pats := mustPatterns(f, testRedirectPatterns...)
	f.Fuzz(func(t *testing.T, raw string) {
		err := validateRedirectURI(raw, pats)
		if err != nil {
			if len(err.Error()) > 600 { // at most 80 input bytes, quoted
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			if got, ok := matchRedirectURI([]string{raw}, raw); ok && got != raw {
				t.Fatalf("match returned %q for %q", got, raw)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("accepted %q, which net/url cannot parse: %v", raw, perr)
		}
		if u.User != nil || u.Fragment != "" || strings.ContainsAny(raw, "#\\") || u.Opaque != "" {
			t.Fatalf("accepted %q with userinfo, fragment, backslash or opaque part", raw)
		}
		for i := range len(raw) {
			if raw[i] <= ' ' || raw[i] >= 0x7f {
				t.Fatalf("accepted %q with byte %#x", raw, raw[i])
			}
		}
		if blockedSchemes[strings.ToLower(u.Scheme)] {
			t.Fatalf("accepted the scheme of %q", raw)
		}
		for seg := range strings.SplitSeq(u.Path, "/") { // u.Path is percent-decoded
			if seg == "." || seg == ".." || strings.Contains(seg, "\\") {
				t.Fatalf("accepted %q, whose path decodes to a dot segment", raw)
			}
		}
		if (u.Scheme == "http" || u.Scheme == "https") && u.Hostname() == "" {
			t.Fatalf("accepted %q without host", raw)
		}
		if got, ok := matchRedirectURI([]string{raw}, raw); !ok || got != raw {
			t.Fatalf("an accepted URI does not match itself: %q", raw)
		}
		// A loopback URI with another port matches, and is itself acceptable.
		if u.Scheme == "http" && u.Port() == "" && strings.HasPrefix(raw, "http://") {
			moved := "http://" + u.Host + ":61234" + strings.TrimPrefix(raw, "http://"+u.Host)
			if got, ok := matchRedirectURI([]string{raw}, moved); ok {
				if got != moved || validateRedirectURI(got, pats) != nil {
					t.Fatalf("loopback match %q for %q is not acceptable", got, raw)
				}
			}
		}
	})
}

// TestSameResource: the forms of the canonical resource RFC 3986's
// normalisation and a client's appended query make equal, and those that
// name another resource.
func TestSameResource(t *testing.T) {
	const want = "https://mcp.example.com/mcp"
	for given, same := range map[string]bool{
		"https://mcp.example.com/mcp/":                                      true,
		"HTTPS://MCP.Example.COM/mcp":                                       true,
		"https://mcp.example.com:443/mcp":                                   true,
		"https://mcp.example.com/mcp?kb_name=sales":                         true,
		"https://mcp.example.com/mcp/?kb_name=sales":                        true,
		"https://mcp.example.com/mcp#x":                                     true,
		"https://mcp.example.com/MCP":                                       false, // paths are case-sensitive
		"https://mcp.example.com/mcp//":                                     false,
		"https://mcp.example.com:8443/mcp":                                  false,
		"http://mcp.example.com/mcp":                                        false,
		"http://mcp.example.com:443/mcp":                                    false,
		"https://mcp.example.com.evil/mcp":                                  false,
		"https://user@mcp.example.com/mcp":                                  false,
		"https://mcp.example.com/other":                                     false,
		"//mcp.example.com/mcp":                                             false,
		"https:mcp.example.com/mcp":                                         false,
		"https://mcp.example.com/mcp%2F":                                    false,
		"https://mcp.example.com/" + strings.Repeat("m", maxRedirectURILen): false,
	} {
		assert.Equal(t, same, sameResource(given, want), given)
	}
	assert.True(t, sameResource("https://mcp.example.com", "https://mcp.example.com/"), "MCPPath /")
	assert.True(t, sameResource("http://127.0.0.1/mcp", "http://127.0.0.1:80/mcp"))
	assert.False(t, sameResource(want+"?a=1", want+"?a=2"), "a resource with a query is compared exactly")
}
