package cognitomcp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// cimdTestDoc is a valid metadata document for clientID, edited by mod.
func cimdTestDoc(clientID string, mod func(map[string]any)) []byte {
	doc := map[string]any{
		"client_id":     clientID,
		"client_name":   "Example MCP Client",
		"client_uri":    "https://client.example/",
		"redirect_uris": []string{"http://127.0.0.1:33418/callback", "https://client.example/oauth/callback"},
		"scope":         "openid email",
	}
	if mod != nil {
		mod(doc)
	}
	b, _ := json.Marshal(doc)
	return b
}

// cimdTestServer is a TLS server whose routes count their hits.
type cimdTestServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newCIMDTestServer(t *testing.T, routes map[string]http.HandlerFunc) *cimdTestServer {
	t.Helper()
	return startCIMDTestServer(t, nil, routes)
}

// newCIMDTestServerFor is newCIMDTestServer with a certificate for hosts
// (which srv.Client() trusts) instead of httptest's; routeCIMDHosts sends
// a fetcher's requests for them to it.
func newCIMDTestServerFor(t *testing.T, hosts []string, routes map[string]http.HandlerFunc) *cimdTestServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return startCIMDTestServer(t, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, routes)
}

// routeCIMDHosts makes f fetch the https URLs of hosts (port 443) from
// srv: the names resolve to its address, and the pinned dial, address
// checks and all, connects to its port.
func routeCIMDHosts(t *testing.T, f *cimdFetcher, srv *cimdTestServer, hosts ...string) {
	t.Helper()
	ip, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	res := &fakeResolver{names: map[string][]string{}}
	for _, h := range hosts {
		res.names[h] = []string{ip}
	}
	f.lookupIP = res.lookup
	f.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return f.dial(ctx, network, net.JoinHostPort(host, port))
	}
}

// startCIMDTestServer starts the server, with cert if not nil.
func startCIMDTestServer(t *testing.T, cert *tls.Certificate, routes map[string]http.HandlerFunc) *cimdTestServer {
	t.Helper()
	s := &cimdTestServer{hits: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		if h, ok := routes[r.URL.Path]; ok {
			h(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if cert != nil {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *cimdTestServer) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// serveDoc answers body as application/json with the given Cache-Control.
func serveDoc(body []byte, cacheControl string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		_, _ = w.Write(body)
	}
}

// fakeResolver answers from a table and counts the names it was asked.
type fakeResolver struct {
	mu    sync.Mutex
	names map[string][]string
	asked []string
}

func (r *fakeResolver) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	addrs, ok := r.names[host]
	if !ok {
		return nil, fmt.Errorf("no such host %s", host)
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestCIMDURLRefusals(t *testing.T) {
	res := &fakeResolver{names: map[string][]string{
		"loopback.test": {"127.0.0.1"},
		"private.test":  {"10.0.0.7"},
		"metadata.test": {"169.254.169.254"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"ula.test":      {"fd00::1"},
		"mixed.test":    {"93.184.216.34", "192.168.1.10"},
		"cgnat.test":    {"100.64.1.1"},
	}}
	f := newCIMDFetcher(nil, false, newStepClock().Now)
	f.lookupIP = res.lookup
	cases := []struct {
		name string
		url  string
		why  string // in the logged reason: the right check fired
	}{
		{"loopback literal", "https://127.0.0.1/client.json", "non-public address"},
		{"loopback literal with port", "https://127.0.0.1:8443/client.json", "non-public address"},
		{"localhost name", "https://localhost/client.json", "localhost"},
		{"localhost subdomain", "https://app.localhost/client.json", "localhost"},
		{"10/8", "https://10.1.2.3/client.json", "non-public address"},
		{"172.16/12", "https://172.16.0.1/client.json", "non-public address"},
		{"192.168/16", "https://192.168.0.1/client.json", "non-public address"},
		{"metadata service", "https://169.254.169.254/latest/meta-data", "non-public address"},
		{"CGNAT", "https://100.64.0.1/client.json", "non-public address"},
		{"unspecified", "https://0.0.0.0/client.json", "unspecified address"},
		{"this network", "https://0.1.2.3/client.json", "non-public address"},
		{"multicast", "https://224.0.0.1/client.json", "non-public address"},
		{"broadcast", "https://255.255.255.255/client.json", "non-public address"},
		{"IPv6 loopback", "https://[::1]/client.json", "non-public address"},
		{"IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/client.json", "non-public address"},
		{"IPv4-mapped metadata", "https://[::ffff:169.254.169.254]/client.json", "non-public address"},
		{"IPv6 link-local", "https://[fe80::1]/client.json", "non-public address"},
		{"IPv6 unique local", "https://[fd12:3456::1]/client.json", "non-public address"},
		{"NAT64 of a private address", "https://[64:ff9b::a00:1]/client.json", "non-public address"},
		{"6to4 of loopback", "https://[2002:7f00:1::1]/client.json", "non-public address"},
		{"name resolving to loopback", "https://loopback.test/client.json", "non-public address"},
		{"name resolving to 10/8", "https://private.test/client.json", "non-public address"},
		{"name resolving to the metadata service", "https://metadata.test/client.json", "non-public address"},
		{"name resolving to IPv4-mapped loopback", "https://mapped.test/client.json", "non-public address"},
		{"name resolving to a unique local address", "https://ula.test/client.json", "non-public address"},
		{"name with one private address among public ones", "https://mixed.test/client.json", "non-public address"},
		{"name resolving to CGNAT", "https://cgnat.test/client.json", "non-public address"},
		{"http scheme", "http://client.example/client.json", "is not https"},
		{"other scheme", "ftp://client.example/client.json", "is not https"},
		{"no path", "https://client.example", "no path"},
		{"root path", "https://client.example/", "no path"},
		{"fragment", "https://client.example/client.json#x", "fragment"},
		{"userinfo", "https://user@client.example/client.json", "userinfo"},
		{"dot segment", "https://client.example/a/../client.json", "dot segment"},
		{"encoded dot segment", "https://client.example/a/%2E%2e/client.json", "dot segment"},
		{"backslash", `https://client.example\@evil.example/client.json`, "backslash"},
		{"too long", "https://client.example/" + strings.Repeat("a", maxRedirectURILen), "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := f.fetch(t.Context(), tc.url)
			assert.Nil(t, rec)
			assert.ErrorIs(t, err, errInvalidClientMetadata)
			assert.ErrorContains(t, err, tc.why)
		})
	}
	assert.NotContains(t, res.asked, "localhost", "localhost is refused by name, before DNS")
}

func TestCIMDAddressClassifier(t *testing.T) {
	cases := []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"93.184.216.34", true},
		{"100.63.255.255", true},
		{"100.128.0.0", true},
		{"2606:4700:4700::1111", true},
		{"::ffff:8.8.8.8", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"224.0.0.251", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.51.100.1", false},
		{"203.0.113.1", false},
		{"::", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::127.0.0.1", false},        // IPv4-compatible, deprecated
		{"64:ff9b::a00:1", false},     // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", true},    // NAT64 of 8.8.8.8 (DNS64 networks)
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of the metadata service
		{"64:ff9b::7f00:1", false},    // NAT64 of loopback
		{"64:ff9b:1::1", false},
		{"100::1", false},
		{"fc00::1", false},
		{"fd00:ec2::254", false}, // the IPv6 metadata service
		{"fe80::1", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"2001::1", false},       // Teredo
		{"2001:db8::1", false},   // documentation
		{"2002:a00:1::1", false}, // 6to4 of 10.0.0.1
		{"3fff::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			assert.Equal(t, tc.public, isPublicAddr(netip.MustParseAddr(tc.addr)))
		})
	}
}

func TestCIMDFetch(t *testing.T) {
	var srv *cimdTestServer
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/client.json": func(w http.ResponseWriter, r *http.Request) {
			assert.Equal(t, "application/json", r.Header.Get("Accept"))
			serveDoc(cimdTestDoc(srv.URL+"/client.json", nil), "")(w, r)
		},
	})
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	rec, err := f.fetch(t.Context(), srv.URL+"/client.json")
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/client.json", rec.ID)
	assert.Equal(t, "Example MCP Client", rec.Name)
	assert.Equal(t, []string{"http://127.0.0.1:33418/callback", "https://client.example/oauth/callback"}, rec.RedirectURIs)
	assert.Equal(t, []string{"openid", "email"}, rec.Scopes)
	assert.Equal(t, []string{"authorization_code", "refresh_token"}, rec.GrantTypes)
	assert.Equal(t, []string{"code"}, rec.ResponseTypes)
	assert.Equal(t, "none", rec.TokenEndpointAuthMethod)
	assert.Equal(t, "https://client.example/", rec.ClientURI)
	assert.True(t, rec.Metadata)

	t.Run("the fetching caller gets a copy too", func(t *testing.T) {
		rec.RedirectURIs[0] = "https://evil.example/cb"
		again, err := f.fetch(t.Context(), srv.URL+"/client.json")
		require.NoError(t, err)
		assert.Equal(t, "http://127.0.0.1:33418/callback", again.RedirectURIs[0])
		assert.Equal(t, 1, srv.hitCount("/client.json"))
	})
	t.Run("without allowLoopback the same server is refused", func(t *testing.T) {
		strict := newCIMDFetcher(srv.Client(), false, newStepClock().Now)
		_, err := strict.fetch(t.Context(), srv.URL+"/client.json")
		assert.ErrorIs(t, err, errInvalidClientMetadata)
	})
	t.Run("an untrusted certificate is refused", func(t *testing.T) {
		other := newCIMDFetcher(nil, true, newStepClock().Now)
		_, err := other.fetch(t.Context(), srv.URL+"/client.json")
		assert.ErrorIs(t, err, errInvalidClientMetadata)
	})
}

// TestCIMDPinnedDial resolves names with the fetcher's own resolver and
// connects to the address it checked, while TLS still verifies the name.
func TestCIMDPinnedDial(t *testing.T) {
	var srv *cimdTestServer
	port := ""
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/client.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc("https://"+r.Host+"/client.json", nil), "")(w, r)
		},
	})
	_, port, _ = strings.Cut(srv.Listener.Addr().String(), ":")
	res := &fakeResolver{names: map[string][]string{
		"example.com":     {"127.0.0.1"}, // httptest's certificate names example.com
		"wrong-name.test": {"127.0.0.1"},
	}}
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	f.lookupIP = res.lookup

	rec, err := f.fetch(t.Context(), "https://example.com:"+port+"/client.json")
	require.NoError(t, err)
	assert.Equal(t, "https://example.com:"+port+"/client.json", rec.ID)
	assert.Contains(t, res.asked, "example.com")

	_, err = f.fetch(t.Context(), "https://wrong-name.test:"+port+"/client.json")
	assert.ErrorIs(t, err, errInvalidClientMetadata, "the certificate is checked against the URL's host, not the pinned address")
}

func TestCIMDResponseRefusals(t *testing.T) {
	var srv *cimdTestServer
	self := func(r *http.Request) string { return "https://" + r.Host + r.URL.Path }
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/redirect.json": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/target.json", http.StatusFound)
		},
		"/target.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/redirect.json", nil), "")(w, r)
		},
		"/missing.json": http.NotFound,
		"/error.json": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		},
		"/html.json": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write(cimdTestDoc(self(r), nil))
		},
		"/big.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(self(r), func(d map[string]any) { d["padding"] = strings.Repeat("x", 6<<10) }), "")(w, r)
		},
		"/big-chunked.json": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			body := cimdTestDoc(self(r), func(d map[string]any) { d["padding"] = strings.Repeat("x", 6<<10) })
			for i := 0; i < len(body); i += 512 {
				_, _ = w.Write(body[i:min(i+512, len(body))])
				w.(http.Flusher).Flush()
			}
		},
		"/mismatch.json": serveDoc(cimdTestDoc("https://other.example/client.json", nil), ""),
		"/slash.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(self(r)+"/", nil), "")(w, r)
		},
		"/not-json.json": serveDoc([]byte("{not json"), ""),
		"/array.json":    serveDoc([]byte(`[{"client_id":"x"}]`), ""),
		"/secret.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(self(r), func(d map[string]any) { d["token_endpoint_auth_method"] = "private_key_jwt" }), "")(w, r)
		},
	})
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	cases := []struct{ name, path string }{
		{"a redirect is not followed", "/redirect.json"},
		{"404", "/missing.json"},
		{"500", "/error.json"},
		{"wrong content type", "/html.json"},
		{"body over 5 KiB", "/big.json"},
		{"chunked body over 5 KiB", "/big-chunked.json"},
		{"client_id differs", "/mismatch.json"},
		{"client_id differs by a trailing slash", "/slash.json"},
		{"not JSON", "/not-json.json"},
		{"not an object", "/array.json"},
		{"private_key_jwt", "/secret.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := f.fetch(t.Context(), srv.URL+tc.path)
			assert.Nil(t, rec)
			assert.ErrorIs(t, err, errInvalidClientMetadata)
		})
	}
	assert.Zero(t, srv.hitCount("/target.json"), "the redirect target was fetched")
}

func TestCIMDDocumentValidation(t *testing.T) {
	const id = "https://client.example/client.json"
	cases := []struct {
		name string
		mod  func(map[string]any)
		ok   bool
		then func(*testing.T, *clientRecord)
	}{
		{"valid", nil, true, nil},
		{"unknown fields tolerated", func(d map[string]any) { d["contacts"] = []string{"a@b.c"}; d["jwks"] = map[string]any{"keys": []any{}} }, true, nil},
		{"auth method none", func(d map[string]any) { d["token_endpoint_auth_method"] = "none" }, true, nil},
		{"custom scheme kept for policy to judge", func(d map[string]any) { d["redirect_uris"] = []string{"cursor://anysphere.cursor-mcp/cb"} }, true, nil},
		{"bad logo dropped", func(d map[string]any) { d["logo_uri"] = "javascript:alert(1)" }, true,
			func(t *testing.T, r *clientRecord) { assert.Empty(t, r.LogoURI) }},
		{"http client_uri dropped", func(d map[string]any) { d["client_uri"] = "http://client.example/" }, true,
			func(t *testing.T, r *clientRecord) { assert.Empty(t, r.ClientURI) }},
		{"grant types as given", func(d map[string]any) { d["grant_types"] = []string{"authorization_code"} }, true,
			func(t *testing.T, r *clientRecord) { assert.Equal(t, []string{"authorization_code"}, r.GrantTypes) }},
		{"grant types not served dropped", func(d map[string]any) {
			d["grant_types"] = []string{"urn:ietf:params:oauth:grant-type:device_code", "authorization_code", "client_credentials", "refresh_token", "authorization_code"}
		}, true, func(t *testing.T, r *clientRecord) {
			assert.Equal(t, []string{"authorization_code", "refresh_token"}, r.GrantTypes)
		}},
		{"response types not served dropped", func(d map[string]any) { d["response_types"] = []string{"code id_token", "code", "token"} }, true,
			func(t *testing.T, r *clientRecord) { assert.Equal(t, []string{"code"}, r.ResponseTypes) }},
		{"private_key_jwt with none among the methods supported", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt", "none"}
		}, true, func(t *testing.T, r *clientRecord) { assert.Equal(t, "none", r.TokenEndpointAuthMethod) }},
		{"client_secret_basic with none among the methods supported", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "client_secret_basic"
			d["token_endpoint_auth_methods_supported"] = []string{"none", "client_secret_basic"}
		}, true, nil},
		{"methods supported malformed: ignored", func(d map[string]any) { d["token_endpoint_auth_methods_supported"] = "none" }, true, nil},
		{"no client_id", func(d map[string]any) { delete(d, "client_id") }, false, nil},
		{"client_id of another case", func(d map[string]any) { d["client_id"] = strings.ToUpper(id) }, false, nil},
		{"no client_name", func(d map[string]any) { delete(d, "client_name") }, false, nil},
		{"blank client_name", func(d map[string]any) { d["client_name"] = "   " }, false, nil},
		{"client_name too long", func(d map[string]any) { d["client_name"] = strings.Repeat("n", 201) }, false, nil},
		{"client_name with bidi override", func(d map[string]any) { d["client_name"] = "Good\u202eliveD" }, false, nil},
		{"client_name not a string", func(d map[string]any) { d["client_name"] = 7 }, false, nil},
		{"no redirect_uris", func(d map[string]any) { delete(d, "redirect_uris") }, false, nil},
		{"empty redirect_uris", func(d map[string]any) { d["redirect_uris"] = []string{} }, false, nil},
		{"too many redirect_uris", func(d map[string]any) {
			var u []string
			for i := range 21 {
				u = append(u, fmt.Sprintf("http://127.0.0.1/cb%d", i))
			}
			d["redirect_uris"] = u
		}, false, nil},
		{"javascript redirect", func(d map[string]any) { d["redirect_uris"] = []string{"javascript:alert(1)"} }, false, nil},
		{"redirect with userinfo", func(d map[string]any) { d["redirect_uris"] = []string{"https://a@b.example/cb"} }, false, nil},
		{"client_secret_basic", func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_basic" }, false, nil},
		{"client_secret_basic without none among the methods supported", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "client_secret_basic"
			d["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic", "client_secret_post"}
		}, false, nil},
		{"private_key_jwt", func(d map[string]any) { d["token_endpoint_auth_method"] = "private_key_jwt" }, false, nil},
		{"private_key_jwt without none among the methods supported", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"}
		}, false, nil},
		{"private_key_jwt with malformed methods supported", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["token_endpoint_auth_methods_supported"] = []any{"none", 7}
		}, false, nil},
		{"implicit grant", func(d map[string]any) { d["grant_types"] = []string{"implicit"} }, false, nil},
		{"device_code grant alone", func(d map[string]any) {
			d["grant_types"] = []string{"urn:ietf:params:oauth:grant-type:device_code"}
		}, false, nil},
		{"no authorization_code among grants", func(d map[string]any) {
			d["grant_types"] = []string{"refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}
		}, false, nil},
		{"empty grant_types", func(d map[string]any) { d["grant_types"] = []string{} }, false, nil},
		{"token response type", func(d map[string]any) { d["response_types"] = []string{"token"} }, false, nil},
		{"unknown application type", func(d map[string]any) { d["application_type"] = "desktop" }, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := parseMetadataDocument(cimdTestDoc(id, tc.mod), id, time.Unix(1_900_000_000, 0))
			if !tc.ok {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.True(t, rec.Metadata)
			if tc.then != nil {
				tc.then(t, rec)
			}
		})
	}
}

// The documents of real clients, verbatim, as their hosts serve them.
const (
	vscodeClientID = "https://vscode.dev/oauth/client-metadata.json"
	vscodeDocument = `{"client_name":"Visual Studio Code","logo_uri":"https://code.visualstudio.com/assets/branding/code-stable.png",` +
		`"grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"],"response_types":["code"],` +
		`"token_endpoint_auth_method":"none","application_type":"native","client_id":"https://vscode.dev/oauth/client-metadata.json",` +
		`"client_uri":"https://vscode.dev/product","redirect_uris":["http://127.0.0.1:33418/","https://vscode.dev/redirect"]}`
	chatGPTClientID = "https://chatgpt.com/oauth/client.json"
	chatGPTDocument = `{"client_id":"https://chatgpt.com/oauth/client.json","client_uri":"https://chatgpt.com/",` +
		`"redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"token_endpoint_auth_method":"private_key_jwt",` +
		`"token_endpoint_auth_methods_supported":["none","private_key_jwt"],"grant_types":["authorization_code","refresh_token"],` +
		`"response_types":["code"],"client_name":"ChatGPT","logo_uri":"https://persistent.oaistatic.com/sonic/misc/openai-logo.png",` +
		`"token_endpoint_auth_signing_alg":"RS256","jwks_uri":"https://chatgpt.com/oauth/jwks.json"}`
)

// newDocumentProxy is a proxy that fetches doc at clientID, an https URL,
// from a test server holding a certificate for its host.
func newDocumentProxy(t *testing.T, clientID, doc string) *registerTestFixture {
	t.Helper()
	u, err := url.Parse(clientID)
	require.NoError(t, err)
	srv := newCIMDTestServerFor(t, []string{u.Hostname()}, map[string]http.HandlerFunc{u.Path: serveDoc([]byte(doc), "")})
	fx := newRegisterTestProxy(t, func(c *ProxyConfig) {
		c.InsecureAllowLoopbackMetadataDocuments = true // the server's address is loopback; the URL is the real one
		c.HTTPClient = srv.Client()
	})
	routeCIMDHosts(t, fx.p.cimd, srv, u.Hostname())
	return fx
}

// authorize GETs /authorize for clientID and redirect, with PKCE.
func (fx *registerTestFixture) authorize(clientID, redirect string) *httptest.ResponseRecorder {
	q := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"st"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
	}
	w := httptest.NewRecorder()
	fx.p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8931/authorize?"+q.Encode(), nil))
	return w
}

// TestCIMDVSCodeDocument: VS Code's document lists the device_code grant,
// which the proxy does not serve; it is dropped, and /authorize accepts the
// client at both its redirect URIs.
func TestCIMDVSCodeDocument(t *testing.T) {
	fx := newDocumentProxy(t, vscodeClientID, vscodeDocument)
	for _, redirect := range []string{"http://127.0.0.1:33418/", "https://vscode.dev/redirect"} {
		t.Run(redirect, func(t *testing.T) {
			w := fx.authorize(vscodeClientID, redirect)
			require.Equal(t, http.StatusFound, w.Code, w.Body.String())
			assert.Contains(t, w.Header().Get("Location"), "/consent?txn=")
		})
	}
	rec, err := fx.p.lookupClient(t.Context(), vscodeClientID)
	require.NoError(t, err)
	assert.Equal(t, "Visual Studio Code", rec.Name)
	assert.Equal(t, []string{"authorization_code", "refresh_token"}, rec.GrantTypes)
	assert.Equal(t, []string{"code"}, rec.ResponseTypes)
	assert.Equal(t, []string{"http://127.0.0.1:33418/", "https://vscode.dev/redirect"}, rec.RedirectURIs)
	assert.Equal(t, "none", rec.TokenEndpointAuthMethod)
}

// TestCIMDChatGPTDocument: ChatGPT's document names private_key_jwt but
// lists none among the methods it supports, which it uses at a server that
// offers only none; /authorize accepts it, as a public client.
func TestCIMDChatGPTDocument(t *testing.T) {
	fx := newDocumentProxy(t, chatGPTClientID, chatGPTDocument)
	w := fx.authorize(chatGPTClientID, "https://chatgpt.com/connector_platform_oauth_redirect")
	require.Equal(t, http.StatusFound, w.Code, w.Body.String())
	assert.Contains(t, w.Header().Get("Location"), "/consent?txn=")
	rec, err := fx.p.lookupClient(t.Context(), chatGPTClientID)
	require.NoError(t, err)
	assert.Equal(t, "ChatGPT", rec.Name)
	assert.Equal(t, "none", rec.TokenEndpointAuthMethod)
	assert.Equal(t, []string{"https://chatgpt.com/connector_platform_oauth_redirect"}, rec.RedirectURIs)
}

func TestCIMDCacheTTL(t *testing.T) {
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"", 10 * time.Minute},
		{"max-age=300", 5 * time.Minute},
		{"public, max-age=7200", 2 * time.Hour},
		{`max-age="120"`, 2 * time.Minute},
		{"max-age=5", time.Minute},
		{"max-age=0", time.Minute},
		{"max-age=999999999999999999", 24 * time.Hour},
		{"max-age=-5", 10 * time.Minute},
		{"max-age=abc", 10 * time.Minute},
		{"no-store", time.Minute},
		{"no-cache, max-age=3600", time.Minute},
		{"MAX-AGE=600", 10 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.header, func(t *testing.T) {
			assert.Equal(t, tc.want, cacheTTL(tc.header))
		})
	}
}

func TestCIMDCache(t *testing.T) {
	clock := newStepClock()
	var srv *cimdTestServer
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/aged.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/aged.json", nil), "max-age=120")(w, r)
		},
		"/default.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc(srv.URL+"/default.json", nil), "")(w, r)
		},
		"/missing.json": http.NotFound,
	})
	f := newCIMDFetcher(srv.Client(), true, clock.Now)
	fetch := func(path string) error {
		_, err := f.fetch(t.Context(), srv.URL+path)
		return err
	}

	t.Run("second fetch from the cache", func(t *testing.T) {
		require.NoError(t, fetch("/aged.json"))
		require.NoError(t, fetch("/aged.json"))
		assert.Equal(t, 1, srv.hitCount("/aged.json"))
	})
	t.Run("max-age honoured", func(t *testing.T) {
		clock.Advance(119 * time.Second)
		require.NoError(t, fetch("/aged.json"))
		assert.Equal(t, 1, srv.hitCount("/aged.json"))
		clock.Advance(2 * time.Second)
		require.NoError(t, fetch("/aged.json"))
		assert.Equal(t, 2, srv.hitCount("/aged.json"))
	})
	t.Run("ten minutes without Cache-Control", func(t *testing.T) {
		require.NoError(t, fetch("/default.json"))
		clock.Advance(9 * time.Minute)
		require.NoError(t, fetch("/default.json"))
		assert.Equal(t, 1, srv.hitCount("/default.json"))
		clock.Advance(2 * time.Minute)
		require.NoError(t, fetch("/default.json"))
		assert.Equal(t, 2, srv.hitCount("/default.json"))
	})
	t.Run("failures are not cached (the draft's §5.2)", func(t *testing.T) {
		require.Error(t, fetch("/missing.json"))
		require.Error(t, fetch("/missing.json"))
		assert.Equal(t, 2, srv.hitCount("/missing.json"), "a client that fixes its document is not kept waiting")
	})
	t.Run("callers get copies", func(t *testing.T) {
		rec, err := f.fetch(t.Context(), srv.URL+"/aged.json")
		require.NoError(t, err)
		rec.RedirectURIs[0] = "https://evil.example/cb"
		rec.Name = "changed"
		again, err := f.fetch(t.Context(), srv.URL+"/aged.json")
		require.NoError(t, err)
		assert.Equal(t, "http://127.0.0.1:33418/callback", again.RedirectURIs[0])
		assert.Equal(t, "Example MCP Client", again.Name)
	})
	t.Run("the cache is bounded", func(t *testing.T) {
		g := newCIMDFetcher(nil, false, clock.Now)
		for i := range 3 * cimdMaxEntries {
			g.mu.Lock()
			g.store(fmt.Sprintf("https://c%d.example/x", i), cimdEntry{rec: &clientRecord{}, expires: clock.Now().Add(time.Hour), staleUntil: clock.Now().Add(time.Hour)})
			g.mu.Unlock()
		}
		assert.LessOrEqual(t, len(g.cache), cimdMaxEntries)
	})
}

// newSlowCIMDServer serves a valid document at /slow.json that signals
// arrived on each request and answers only once release is closed.
func newSlowCIMDServer(t *testing.T, arrived chan<- struct{}, release <-chan struct{}) *cimdTestServer {
	var srv *cimdTestServer
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/slow.json": func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-release
			serveDoc(cimdTestDoc(srv.URL+"/slow.json", nil), "")(w, r)
		},
	})
	return srv
}

func TestCIMDConcurrentFetchesShareOneRequest(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := newSlowCIMDServer(t, arrived, release)
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 5 {
		wg.Go(func() {
			if _, err := f.fetch(context.Background(), srv.URL+"/slow.json"); err == nil {
				ok.Add(1)
			}
		})
	}
	<-arrived
	// Every caller waits on the one download before it is let through: none
	// can be served from the cache it fills.
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		call := f.inflight[srv.URL+"/slow.json"]
		return call != nil && call.waiters == 5
	}, 10*time.Second, time.Millisecond, "the five callers share one download")
	close(release)
	wg.Wait()
	assert.Equal(t, int32(5), ok.Load())
	assert.Equal(t, 1, srv.hitCount("/slow.json"))
}

func TestCIMDWaiterHonoursItsContext(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := newSlowCIMDServer(t, arrived, release)
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	leader := make(chan error, 1)
	go func() {
		_, err := f.fetch(context.Background(), srv.URL+"/slow.json")
		leader <- err
	}()
	<-arrived
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.fetch(ctx, srv.URL+"/slow.json")
	assert.True(t, errors.Is(err, context.Canceled) && errors.Is(err, errInvalidClientMetadata))
	assert.ErrorIs(t, err, ErrUnavailable, "no verdict on the client: a 503, never invalid_client, on which clients drop their tokens")
	close(release)
	assert.NoError(t, <-leader)
}

// TestCIMDLeaderHonoursItsContext: the request whose client id starts the
// download waits for it no longer than its own context, like the requests
// waiting on it; the download goes on, and the next request gets its
// outcome.
func TestCIMDLeaderHonoursItsContext(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := newSlowCIMDServer(t, arrived, release)
	f := newCIMDFetcher(srv.Client(), true, newStepClock().Now)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := f.fetch(ctx, srv.URL+"/slow.json")
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatalf("the leading request outlived its context by seconds: %v", <-done)
	}
	assert.True(t, errors.Is(err, context.Canceled) && errors.Is(err, errInvalidClientMetadata), "%v", err)
	assert.ErrorIs(t, err, ErrUnavailable, "no verdict on the client")
	close(release)
	_, err = f.fetch(t.Context(), srv.URL+"/slow.json")
	assert.NoError(t, err, "the download went on")
}

// TestCIMDHostOutage: while a document's host is unreachable or failing
// (5xx, 429), the last good document stands in, asked for again once a
// minute, for up to cimdMaxTTL past its expiry; then, or with no good copy,
// the failure wraps ErrUnavailable (503 at /token, not invalid_client,
// which makes MCP clients drop their tokens). A definite answer (404) is
// invalid client metadata, not ErrUnavailable, and no copy stands in for it.
func TestCIMDHostOutage(t *testing.T) {
	clock := newStepClock()
	var status atomic.Int32 // 0: the document; else this status
	var srv *cimdTestServer
	doc := func(path string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s := status.Load(); s != 0 {
				http.Error(w, "down", int(s))
				return
			}
			serveDoc(cimdTestDoc(srv.URL+path, nil), "")(w, r)
		}
	}
	srv = newCIMDTestServer(t, map[string]http.HandlerFunc{"/c.json": doc("/c.json"), "/d.json": doc("/d.json")})
	f := newCIMDFetcher(srv.Client(), true, clock.Now)
	fetch := func(path string) (*clientRecord, error) { return f.fetch(t.Context(), srv.URL+path) }

	_, err := fetch("/c.json")
	require.NoError(t, err)
	status.Store(http.StatusServiceUnavailable)
	clock.Advance(11 * time.Minute) // past the ten minutes of a document without Cache-Control
	rec, err := fetch("/c.json")
	require.NoError(t, err, "the last good document stands in")
	assert.Equal(t, "Example MCP Client", rec.Name)
	assert.Equal(t, 2, srv.hitCount("/c.json"))
	clock.Advance(30 * time.Second)
	_, err = fetch("/c.json")
	require.NoError(t, err)
	assert.Equal(t, 2, srv.hitCount("/c.json"), "asked again only after a minute")
	clock.Advance(31 * time.Second)
	status.Store(http.StatusTooManyRequests)
	_, err = fetch("/c.json")
	require.NoError(t, err)
	assert.Equal(t, 3, srv.hitCount("/c.json"))
	clock.Advance(cimdMaxTTL)
	_, err = fetch("/c.json")
	assert.ErrorIs(t, err, ErrUnavailable, "too old to stand in")
	assert.ErrorIs(t, err, errInvalidClientMetadata)

	_, err = fetch("/d.json")
	assert.ErrorIs(t, err, ErrUnavailable, "no good copy: unavailable, not invalid")

	status.Store(0)
	clock.Advance(2 * time.Minute)
	_, err = fetch("/d.json")
	require.NoError(t, err)
	status.Store(http.StatusNotFound)
	clock.Advance(11 * time.Minute)
	_, err = fetch("/d.json")
	assert.ErrorIs(t, err, errInvalidClientMetadata, "a document gone for good")
	assert.NotErrorIs(t, err, ErrUnavailable)
}

// TestCIMDFailureKinds: a refused address and a name that does not exist
// are definite (invalid client metadata, never ErrUnavailable); a host that
// stops answering (connection refused) is an outage, for which the last
// good document stands in; and the cache, when full, drops failures before
// a document that may still stand in.
func TestCIMDFailureKinds(t *testing.T) {
	clock := newStepClock()
	srv := newCIMDTestServer(t, map[string]http.HandlerFunc{
		"/client.json": func(w http.ResponseWriter, r *http.Request) {
			serveDoc(cimdTestDoc("https://"+r.Host+"/client.json", nil), "")(w, r)
		},
	})
	_, port, _ := strings.Cut(srv.Listener.Addr().String(), ":")
	res := &fakeResolver{names: map[string][]string{"example.com": {"127.0.0.1"}, "metadata.test": {"169.254.169.254"}}}
	f := newCIMDFetcher(srv.Client(), true, clock.Now)
	f.lookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "nx.test" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return res.lookup(ctx, host)
	}
	for _, host := range []string{"metadata.test", "nx.test"} {
		_, err := f.fetch(t.Context(), "https://"+host+":"+port+"/client.json")
		assert.ErrorIs(t, err, errInvalidClientMetadata, host)
		assert.NotErrorIs(t, err, ErrUnavailable, host)
	}

	good := "https://example.com:" + port + "/client.json"
	_, err := f.fetch(t.Context(), good)
	require.NoError(t, err)
	srv.Close()
	clock.Advance(11 * time.Minute)
	rec, err := f.fetch(t.Context(), good)
	require.NoError(t, err, "connection refused: the last good copy stands in")
	assert.Equal(t, good, rec.ID)

	clock.Advance(2 * time.Minute) // the standing-in copy's minute has passed; its 24 h have not
	f.mu.Lock()
	for i := range cimdMaxEntries {
		f.store(fmt.Sprintf("https://old%d.example/x", i), cimdEntry{rec: &clientRecord{}, expires: clock.Now().Add(-time.Hour), staleUntil: clock.Now().Add(-time.Minute)})
	}
	_, kept := f.cache[good]
	f.mu.Unlock()
	assert.True(t, kept, "entries of no more use go before a copy that may stand in")
}
