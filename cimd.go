package cognitomcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Client ID Metadata Documents (MCP 2025-11-25,
// draft-ietf-oauth-client-id-metadata-document): a client_id that is an
// https URL names a JSON document, fetched by the proxy, that describes the
// client. The fetch is an SSRF vector, so it is fenced: the host's addresses
// must all be public, the connection goes to exactly the address checked, no
// redirect is followed, and time and size are bounded.

const (
	cimdMaxBody    = 5 << 10 // the draft suggests 5 KiB
	cimdTimeout    = 5 * time.Second
	cimdMinTTL     = time.Minute // also for no-store / no-cache: one fetch a minute at most
	cimdMaxTTL     = 24 * time.Hour
	cimdDefaultTTL = 10 * time.Minute
	cimdFailureTTL = time.Minute
	cimdMaxEntries = 1000
)

// errInvalidClientMetadata is wrapped by every failure of cimdFetcher.fetch:
// a client_id URL that may not be fetched, a fetch that failed, or a
// document that is not valid. /authorize shows an error page for it (never
// a redirect); /token and /revoke answer invalid_client, or, when the
// failure also wraps ErrUnavailable (the document's host unreachable or
// failing, and no good copy of the document at hand), 503.
var errInvalidClientMetadata = errors.New("cognitomcp: invalid client metadata document")

// errCIMDUnreachable marks a fetch that failed for a reason that may pass
// (network, timeout, 5xx, 429), as opposed to a definite answer (404, a bad
// document, an address the policy refuses, a name that does not exist).
var errCIMDUnreachable = errors.New("document host unreachable")

// errCIMDRefusedAddress marks a dial the address policy refused.
var errCIMDRefusedAddress = errors.New("non-public address")

// cimdFetcher fetches, validates and caches client metadata documents. Safe
// for concurrent use; concurrent fetches of one URL share one request.
type cimdFetcher struct {
	client        *http.Client
	allowLoopback bool
	now           func() time.Time
	logger        *slog.Logger // says when a stale document stands in; nil: silent
	// lookupIP resolves a host name; tests replace it.
	lookupIP func(ctx context.Context, host string) ([]netip.Addr, error)

	mu       sync.Mutex
	cache    map[string]cimdEntry
	inflight map[string]*cimdCall
}

type cimdEntry struct {
	rec     *clientRecord
	expires time.Time
	// staleUntil is how long rec may stand in while the document's host is
	// unreachable: cimdMaxTTL past the expiry of the last good fetch.
	staleUntil time.Time
}

type cimdCall struct {
	done    chan struct{}
	rec     *clientRecord
	err     error
	waiters int // callers waiting on it, under the fetcher's mu: for tests
}

// newCIMDFetcher returns a fetcher with its own pinned-dial transport. Of
// client it keeps only the root CAs of an *http.Transport (tests trust an
// httptest server so). allowLoopback also allows http URLs and loopback or
// private addresses: for tests only.
func newCIMDFetcher(client *http.Client, allowLoopback bool, now func() time.Time) *cimdFetcher {
	if now == nil {
		now = time.Now
	}
	f := &cimdFetcher{
		allowLoopback: allowLoopback,
		now:           now,
		lookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		cache:    make(map[string]cimdEntry),
		inflight: make(map[string]*cimdCall),
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if client != nil {
		if t, ok := client.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
			tlsConf.RootCAs = t.TLSClientConfig.RootCAs
		}
	}
	f.client = &http.Client{
		Timeout: cimdTimeout,
		Transport: &http.Transport{
			Proxy:                  nil, // a proxy would make the pinned address meaningless
			DialContext:            f.dial,
			TLSClientConfig:        tlsConf,
			TLSHandshakeTimeout:    cimdTimeout,
			ResponseHeaderTimeout:  cimdTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableCompression:     true,
			MaxIdleConns:           16,
			IdleConnTimeout:        30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// fetch returns the client described by the metadata document at clientID,
// from the cache when fresh. The record's redirect URIs are well-formed but
// not yet checked against the proxy's policy, and its scopes are the
// document's: lookupClient applies both. Every error wraps
// errInvalidClientMetadata. The record is the caller's to modify.
func (f *cimdFetcher) fetch(ctx context.Context, clientID string) (*clientRecord, error) {
	if err := f.checkURL(clientID); err != nil {
		return nil, fmt.Errorf("%w: client_id URL %w", errInvalidClientMetadata, err)
	}
	f.mu.Lock()
	if e, ok := f.cache[clientID]; ok && f.now().Before(e.expires) {
		f.mu.Unlock()
		return cloneClientRecord(e.rec), nil
	}
	call, running := f.inflight[clientID]
	if !running {
		call = &cimdCall{done: make(chan struct{})}
		f.inflight[clientID] = call
		go f.lead(ctx, clientID, call) // so that this caller, too, waits no longer than its ctx
	}
	call.waiters++
	f.mu.Unlock()
	select {
	case <-call.done:
		return cloneClientRecord(call.rec), call.err
	case <-ctx.Done(): // the request ended: no verdict on the client (503, not invalid_client)
		return nil, fmt.Errorf("%w: %w: %w", errInvalidClientMetadata, ErrUnavailable, ctx.Err())
	}
}

// lead downloads the document for everyone waiting on call, caches a valid
// one (or keeps the last good one standing in during an outage; a failure
// is never cached), and releases the waiters, a panic in the download being
// its error. The request that started it going away does not cut it short for
// the others: the download is bounded by cimdTimeout.
//
// While the document's host is unreachable, the last good document stands
// in (for up to cimdMaxTTL past its expiry, asking again every
// cimdFailureTTL): a client's users must not be signed out by an outage of
// its host (an MCP client drops its tokens on invalid_client). Without one,
// the failure wraps ErrUnavailable: 503, not invalid_client. A failure is
// never cached, nor is an invalid document (the draft's §5.2 forbids it):
// the next request fetches again, once its client has fixed its document.
func (f *cimdFetcher) lead(ctx context.Context, clientID string, call *cimdCall) {
	f.mu.Lock()
	prev := f.cache[clientID]
	f.mu.Unlock()
	var rec *clientRecord // shared by the cache and the waiters: never handed out
	var staleUntil time.Time
	var ttl time.Duration
	// err stays this unless the download returns (a Goexit, a panic(nil)).
	err := fmt.Errorf("%w: fetch did not complete", errInvalidClientMetadata)
	defer func() {
		if r := recover(); r != nil {
			rec, err = nil, fmt.Errorf("%w: fetch panicked: %v", errInvalidClientMetadata, r)
		}
		f.mu.Lock()
		if rec != nil {
			f.store(clientID, cimdEntry{rec: rec, expires: f.now().Add(ttl), staleUntil: staleUntil})
		} else {
			delete(f.cache, clientID) // a failure, or a document gone or invalid now
		}
		delete(f.inflight, clientID)
		call.rec, call.err = rec, err
		close(call.done)
		f.mu.Unlock()
	}()
	rec, ttl, err = f.download(context.WithoutCancel(ctx), clientID)
	switch {
	case err == nil:
		staleUntil = f.now().Add(ttl + cimdMaxTTL)
	case errors.Is(err, errCIMDUnreachable) && prev.rec != nil && f.now().Before(prev.staleUntil):
		if f.logger != nil {
			f.logger.Warn("cognitomcp: client metadata document unreachable; the last good copy stands in",
				"client_id", truncate(clientID, 200), "until", prev.staleUntil, "reason", err.Error())
		}
		rec, ttl, err, staleUntil = prev.rec, cimdFailureTTL, nil, prev.staleUntil
	case errors.Is(err, errCIMDUnreachable):
		rec, err = nil, fmt.Errorf("%w: %w: %w", errInvalidClientMetadata, ErrUnavailable, err)
	default:
		rec, err = nil, fmt.Errorf("%w: %w", errInvalidClientMetadata, err)
	}
}

// store caches e, keeping at most cimdMaxEntries. Entries of no more use
// go first (past the time their document may stand in), then arbitrary
// ones. f.mu is held.
func (f *cimdFetcher) store(key string, e cimdEntry) {
	if _, ok := f.cache[key]; !ok && len(f.cache) >= cimdMaxEntries {
		now := f.now()
		evict := func(drop func(cimdEntry) bool) {
			for k, old := range f.cache {
				if len(f.cache) < cimdMaxEntries {
					return
				}
				if drop(old) {
					delete(f.cache, k)
				}
			}
		}
		evict(func(old cimdEntry) bool { return !now.Before(old.staleUntil) })
		evict(func(cimdEntry) bool { return true })
	}
	f.cache[key] = e
}

// checkURL applies the draft's rules for a client_id URL: https, a host, a
// path other than "/", no fragment, userinfo or dot segment; and refuses, before
// any DNS, hosts that are non-public IP literals or localhost names.
func (f *cimdFetcher) checkURL(clientID string) error {
	u, err := parseStrictURI(clientID, false)
	if err != nil {
		return err
	}
	switch {
	case u.scheme != "https" && !(f.allowLoopback && u.scheme == "http"):
		return errors.New("is not https")
	case !u.hasAuthority || u.host == "":
		return errors.New("has no host")
	case u.path == "" || u.path == "/":
		return errors.New("has no path")
	case u.isIP && !f.addrAllowed(u.addr):
		return errors.New("names a non-public address")
	case !f.allowLoopback && (u.host == "localhost" || strings.HasSuffix(u.host, ".localhost")):
		return errors.New("names localhost")
	}
	return nil
}

// addrAllowed: public addresses only, or with allowLoopback also loopback and
// private ones (never link-local, so never the cloud metadata service).
func (f *cimdFetcher) addrAllowed(a netip.Addr) bool {
	if f.allowLoopback && a.Zone() == "" && (a.Unmap().IsLoopback() || a.Unmap().IsPrivate()) {
		return true
	}
	return isPublicAddr(a)
}

// Special-purpose ranges (RFC 6890 and successors) that the netip predicates
// do not cover.
var (
	blockedV4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
		netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared space
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
		netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
		netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
		netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	}
	globalV6  = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // the well-known prefix: DNS64 maps IPv4 into it
	blockedV6 = []netip.Prefix{
		netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments, Teredo
		netip.MustParsePrefix("2001:db8::/32"), // documentation
		netip.MustParsePrefix("2002::/16"),     // 6to4: embeds any IPv4 address
		netip.MustParsePrefix("3fff::/20"),     // documentation
	}
)

// isPublicAddr reports whether a is a global unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local (169.254/16, with the metadata
// service, fe80::/10), unspecified, multicast, CGNAT, reserved or
// documentation space; IPv4-mapped addresses are judged as IPv4, and IPv6
// outside 2000::/3 (IPv4-compatible, site-local, local-use NAT64…) is refused,
// except the well-known NAT64 prefix 64:ff9b::/96 (DNS64 networks), judged
// by the IPv4 address it embeds.
func isPublicAddr(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	if nat64.Contains(a) { // judged as the IPv4 address it reaches
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	blocked := blockedV4
	if a.Is6() {
		if !globalV6.Contains(a) {
			return false
		}
		blocked = blockedV6
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dial resolves host itself, refuses it if any address is not allowed, and
// connects to exactly those checked addresses; TLS (done by the transport)
// still verifies the certificate for the host name.
func (f *cimdFetcher) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = f.lookupIP(ctx, host); err != nil {
		return nil, fmt.Errorf("resolve host: %w", err)
	}
	if len(addrs) == 0 {
		return nil, errors.New("resolve host: no addresses")
	}
	for _, a := range addrs {
		if !f.addrAllowed(a) {
			return nil, fmt.Errorf("host resolves to %s: %w", a, errCIMDRefusedAddress)
		}
	}
	d := net.Dialer{Timeout: cimdTimeout, Control: f.control}
	var errs []error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// control re-checks the address the socket actually connects to.
func (f *cimdFetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !f.addrAllowed(ap.Addr()) {
		return fmt.Errorf("refusing to connect to %s: %w", address, errCIMDRefusedAddress)
	}
	return nil
}

// download GETs and validates the document; ttl is how long to cache it.
func (f *cimdFetcher) download(ctx context.Context, clientID string) (rec *clientRecord, ttl time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, cimdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cognitomcp")
	resp, err := f.client.Do(req)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.Is(err, errCIMDRefusedAddress) || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, 0, fmt.Errorf("fetch: %w", err)
		}
		return nil, 0, fmt.Errorf("fetch: %w: %w", errCIMDUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return nil, 0, fmt.Errorf("fetch: %w: status %d", errCIMDUnreachable, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch: status %d (redirects are not followed)", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, 0, errors.New("fetch: content type is not application/json")
	}
	if resp.ContentLength > cimdMaxBody {
		return nil, 0, fmt.Errorf("fetch: document larger than %d bytes", cimdMaxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cimdMaxBody+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch: read: %w: %w", errCIMDUnreachable, err)
	}
	if len(body) > cimdMaxBody {
		return nil, 0, fmt.Errorf("fetch: document larger than %d bytes", cimdMaxBody)
	}
	rec, err = parseMetadataDocument(body, clientID, f.now())
	if err != nil {
		return nil, 0, err
	}
	return rec, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// cacheTTL reads max-age from a Cache-Control header, bounded to
// [cimdMinTTL, cimdMaxTTL]; cimdDefaultTTL when absent; no-store and
// no-cache count as zero, so the minimum.
func cacheTTL(cc string) time.Duration {
	ttl := cimdDefaultTTL
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return cimdMinTTL
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(cimdMaxTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, cimdMinTTL), cimdMaxTTL)
}

// parseMetadataDocument validates a client metadata document: a JSON object
// whose client_id equals the URL exactly, with a client_name and well-formed
// redirect_uris, and a client that can be public (token_endpoint_auth_method
// absent or "none", or "none" among its token_endpoint_auth_methods_supported,
// as in ChatGPT's; one that can only use a secret or private_key_jwt is
// refused). A document is written once for many servers, so what this one
// does not offer is dropped rather than failing it: grant and response types
// other than authorization_code, refresh_token and code (VS Code's lists
// device_code), so long as authorization_code and code remain, and bad
// cosmetic fields (client_uri, logo_uri, software_*). The client is public.
func parseMetadataDocument(body []byte, clientID string, now time.Time) (*clientRecord, error) {
	md, err := decodeClientMetadata(body)
	if err != nil {
		return nil, err
	}
	if md.ClientID != clientID {
		return nil, errors.New("document client_id does not equal its URL")
	}
	if strings.TrimSpace(md.ClientName) == "" {
		return nil, errors.New("document has no client_name")
	}
	if err := md.checkCommon(dropUnsupported); err != nil {
		return nil, err
	}
	if !md.canBePublic() {
		return nil, errors.New(`token_endpoint_auth_method must be "none" or absent, or token_endpoint_auth_methods_supported must list "none": only public clients are supported`)
	}
	for i, u := range md.RedirectURIs {
		if _, err := parseStrictURI(u, false); err != nil {
			return nil, fmt.Errorf("redirect_uris[%d] %w", i, err)
		}
	}
	rec := md.record(clientID, now)
	rec.Metadata = true
	if checkHTTPSURL(rec.ClientURI) != nil {
		rec.ClientURI = ""
	}
	if checkHTTPSURL(rec.LogoURI) != nil {
		rec.LogoURI = ""
	}
	if checkText(rec.SoftwareID, 200) != nil {
		rec.SoftwareID = ""
	}
	if checkText(rec.SoftwareVersion, 200) != nil {
		rec.SoftwareVersion = ""
	}
	return rec, nil
}

// cloneClientRecord is a deep copy, nil for nil.
func cloneClientRecord(r *clientRecord) *clientRecord {
	if r == nil {
		return nil
	}
	c := *r
	c.RedirectURIs = slices.Clone(r.RedirectURIs)
	c.Scopes = slices.Clone(r.Scopes)
	c.GrantTypes = slices.Clone(r.GrantTypes)
	c.ResponseTypes = slices.Clone(r.ResponseTypes)
	return &c
}
