package cognitomcp

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Redirect URI policy (design §5, MCP checklist G5 and H2).
//
// Registration (validateRedirectURI) accepts https URLs, http on a loopback
// host (localhost, 127.0.0.0/8, [::1]) and anything matching a configured
// pattern; it always refuses what could make a redirect go somewhere other
// than it reads: userinfo, fragments, dot segments raw or percent-encoded,
// encoded slashes, backslashes, control characters, non-ASCII, and the
// javascript: data: file: vbscript: schemes. /authorize (matchRedirectURI)
// then wants the registered string byte for byte, except for the port of a
// loopback http URI (RFC 8252 §7.3).

// maxRedirectURILen bounds a redirect URI, a pattern and a metadata document URL.
const maxRedirectURILen = 2048

// errRedirectURI is wrapped by every refusal of validateRedirectURI;
// errRedirectNotAllowed too, by the refusal of a well-formed URI whose
// scheme or host the policy does not allow.
var (
	errRedirectURI        = errors.New("invalid redirect URI")
	errRedirectNotAllowed = errors.New("not allowed")
)

// blockedSchemes can never be registered, not even through a pattern.
var blockedSchemes = map[string]bool{
	"javascript": true, "data": true, "file": true, "vbscript": true,
	"blob": true, "about": true, "filesystem": true,
}

// strictURI is an absolute URI that passed parseStrictURI, split as written.
type strictURI struct {
	raw          string
	scheme       string // lower case
	hasAuthority bool   // "//" follows the scheme
	host         string // lower case; IPv6 without brackets
	hostRaw      string // as written, brackets included
	addr         netip.Addr
	isIP         bool
	port         string
	portStart    int // index in raw of the ':' before the port, or -1
	portEnd      int // index in raw just past the port
	path         string
	query        string
	hasQuery     bool
}

// redirectPattern is a compiled entry of ProxyConfig.AllowedRedirectURIs. A
// "*" matches any run of characters within one host label or one path
// segment; scheme, port and query match exactly; the host case-insensitively.
type redirectPattern struct {
	raw   string
	uri   *strictURI
	host  []string // labels
	path  []string // segments
	exact bool     // no "*" anywhere: compare the whole URI
}

// compileRedirectPatterns parses the allow-list patterns. A pattern obeys the
// rules of a redirect URI (no userinfo, fragment, dot segment, blocked
// scheme…), may use a custom scheme ("cursor://anysphere.cursor-mcp/cb"),
// and may hold "*" only inside host labels other than the last, and inside
// path segments.
func compileRedirectPatterns(patterns []string) ([]redirectPattern, error) {
	out := make([]redirectPattern, 0, len(patterns))
	for _, raw := range patterns {
		u, err := parseStrictURI(raw, true)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", truncate(raw, 100), err)
		}
		pat := redirectPattern{raw: raw, uri: u, path: strings.Split(u.path, "/"), exact: !strings.Contains(raw, "*")}
		if u.hasAuthority {
			pat.host = strings.Split(u.host, ".")
		}
		out = append(out, pat)
	}
	return out, nil
}

// match reports whether u (parsed without wildcards) matches the pattern.
func (p *redirectPattern) match(u *strictURI) bool {
	pu := p.uri
	if pu.scheme != u.scheme || pu.hasAuthority != u.hasAuthority || pu.port != u.port ||
		pu.hasQuery != u.hasQuery || pu.query != u.query {
		return false
	}
	if p.exact {
		return pu.host == u.host && pu.path == u.path
	}
	return matchParts(p.host, u.host, '.') && matchParts(p.path, u.path, '/')
}

// matchParts matches s, split at sep, part by part against the glob parts.
func matchParts(parts []string, s string, sep byte) bool {
	for i, part := range parts {
		var seg string
		if i == len(parts)-1 {
			seg, s = s, ""
			if strings.IndexByte(seg, sep) >= 0 {
				return false
			}
		} else {
			j := strings.IndexByte(s, sep)
			if j < 0 {
				return false
			}
			seg, s = s[:j], s[j+1:]
		}
		if !glob(part, seg) {
			return false
		}
	}
	return true
}

// glob matches s against pattern, where '*' matches any run of bytes.
func glob(pattern, s string) bool {
	px, sx, star, mark := 0, 0, -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			star, mark = px, sx
			px++
		case px < len(pattern) && pattern[px] == s[sx]:
			px++
			sx++
		case star >= 0:
			px, mark = star+1, mark+1
			sx = mark
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// validateRedirectURI says whether raw may be registered as a redirect URI:
// https, http on a loopback host, or a match of one of patterns; never a URI
// parseStrictURI refuses. The scheme and host are compared
// case-insensitively here; /authorize compares bytes. The error, which
// wraps errRedirectURI, quotes at most 80 bytes of raw and is safe to show.
func validateRedirectURI(raw string, patterns []redirectPattern) error {
	u, err := parseStrictURI(raw, false)
	if err != nil {
		return redirectError(raw, err.Error())
	}
	if name, ok := reservedParam(u.query); ok {
		return redirectError(raw, "holds "+name+" in its query, which the proxy adds")
	}
	if allowedByDefault(u) || anyPattern(u, patterns) {
		return nil
	}
	return fmt.Errorf("%w: %w", redirectError(raw, "must be https, http on a loopback host (localhost, 127.0.0.1, [::1]), or match an allowed pattern"), errRedirectNotAllowed)
}

// trustedRedirect reports whether an error of an authorization request,
// before the user has seen any page, may be sent to the redirect URI raw
// (already validated) by redirect. RFC 9700 §4.11.2 recommends redirecting
// automatically only to URIs the server trusts, since anyone may register
// a client with an https redirect URI of their own and then use the
// server's /authorize, through a bad parameter, as a link that lands on
// their site. Trusted: http on a loopback host (the user's own machine,
// where native clients wait for the answer) and what an operator's pattern
// allows; an https URI is shown an error page instead.
func trustedRedirect(raw string, patterns []redirectPattern) bool {
	u, err := parseStrictURI(raw, false)
	return err == nil && (u.scheme == "http" && isLoopbackRedirect(u) || anyPattern(u, patterns))
}

// anyPattern reports whether u matches one of patterns.
func anyPattern(u *strictURI, patterns []redirectPattern) bool {
	for i := range patterns {
		if patterns[i].match(u) {
			return true
		}
	}
	return false
}

func redirectError(raw, reason string) error {
	return fmt.Errorf("%w %q: %s", errRedirectURI, truncate(raw, 80), reason)
}

// redirectParams are the parameters the proxy adds to a redirect URI's
// query (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).
var redirectParams = []string{"code", "state", "iss", "error", "error_description", "error_uri"}

// reservedParam returns the first parameter of query (a URI's query,
// encoded) that is one of redirectParams: a registered URI holding one
// would reach its client with two of it.
func reservedParam(query string) (string, bool) {
	for pair := range strings.SplitSeq(query, "&") {
		name, _, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if slices.Contains(redirectParams, name) {
			return name, true
		}
	}
	return "", false
}

// allowedByDefault: https anywhere, http on loopback.
func allowedByDefault(u *strictURI) bool {
	switch u.scheme {
	case "https":
		return u.hasAuthority && u.host != ""
	case "http":
		return isLoopbackRedirect(u)
	}
	return false
}

// isLoopbackRedirect: http to localhost, 127.0.0.0/8 or [::1] — literally,
// not "localhost.evil.example", nor ::ffff:127.0.0.1, nor 0.0.0.0.
func isLoopbackRedirect(u *strictURI) bool {
	if u.scheme != "http" || !u.hasAuthority {
		return false
	}
	if u.isIP {
		return u.addr.Is4() && u.addr.IsLoopback() || u.addr == netip.IPv6Loopback()
	}
	return u.host == "localhost"
}

// matchRedirectURI is the /authorize check: requested must equal one of
// registered byte for byte, or, for a registered http loopback URI, differ
// only in its port (RFC 8252 §7.3: same scheme, host literal, path and
// query; localhost and 127.0.0.1 differ). It returns the URI to redirect to.
func matchRedirectURI(registered []string, requested string) (string, bool) {
	if requested == "" || len(requested) > maxRedirectURILen {
		return "", false
	}
	for _, reg := range registered {
		if reg == requested {
			return reg, true
		}
	}
	req, err := parseStrictURI(requested, false)
	if err != nil || !isLoopbackRedirect(req) {
		return "", false
	}
	want := withoutPort(req)
	for _, reg := range registered {
		u, err := parseStrictURI(reg, false)
		if err == nil && isLoopbackRedirect(u) && withoutPort(u) == want {
			return requested, true
		}
	}
	return "", false
}

// withoutPort is the URI as written with its ":port" cut out.
func withoutPort(u *strictURI) string {
	if u.portStart < 0 {
		return u.raw
	}
	return u.raw[:u.portStart] + u.raw[u.portEnd:]
}

// parseStrictURI parses an absolute URI and refuses anything whose meaning a
// browser or server could read differently from us. With pattern, "*" may
// appear inside host labels (not the last) and path segments only. The error
// says why in a few words and never quotes the input.
func parseStrictURI(raw string, pattern bool) (*strictURI, error) {
	if raw == "" {
		return nil, errors.New("is empty")
	}
	if len(raw) > maxRedirectURILen {
		return nil, fmt.Errorf("is longer than %d bytes", maxRedirectURILen)
	}
	if err := checkURIChars(raw); err != nil {
		return nil, err
	}
	u := &strictURI{raw: raw, portStart: -1}
	colon := strings.IndexByte(raw, ':')
	if colon <= 0 || !validScheme(raw[:colon]) {
		return nil, errors.New("is not an absolute URI")
	}
	u.scheme = strings.ToLower(raw[:colon])
	if blockedSchemes[u.scheme] {
		return nil, fmt.Errorf("uses the forbidden scheme %q", u.scheme)
	}
	rest := raw[colon+1:]
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, u.query, u.hasQuery = rest[:i], rest[i+1:], true
		if pattern && strings.Contains(u.query, "*") {
			return nil, errors.New(`has "*" in its query; wildcards go in host labels and path segments only`)
		}
	}
	if strings.HasPrefix(rest, "//") {
		u.hasAuthority = true
		start := colon + 3
		end := strings.IndexByte(rest[2:], '/')
		if end < 0 {
			end = len(rest) - 2
		}
		if err := u.parseAuthority(rest[2:2+end], start, pattern); err != nil {
			return nil, err
		}
		rest = rest[2+end:]
	} else if !strings.HasPrefix(rest, "/") {
		return nil, errors.New("is not a hierarchical URI with an absolute path")
	}
	u.path = rest
	if (u.scheme == "http" || u.scheme == "https") && (!u.hasAuthority || u.host == "") {
		return nil, errors.New("has no host")
	}
	if err := checkPath(u.path); err != nil {
		return nil, err
	}
	return u, nil
}

// checkURIChars allows the characters of RFC 3986 only: no controls, space,
// backslash or non-ASCII byte; no fragment; well-formed percent escapes.
func checkURIChars(raw string) error {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '#':
			return errors.New("has a fragment")
		case c == '\\':
			return errors.New("has a backslash")
		case c < 0x21 || c == 0x7f:
			return errors.New("has a control character or whitespace")
		case c >= 0x80:
			return errors.New("has a non-ASCII character (use punycode and percent-encoding)")
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return errors.New("has a malformed percent-escape")
			}
		case !isURIChar(c):
			return fmt.Errorf("has the character %q, which is not allowed in a URI", c)
		}
	}
	return nil
}

func isURIChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:/?[]@!$&'()*+,;=%", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// parseAuthority checks host[:port] (no userinfo); start is its index in raw.
func (u *strictURI) parseAuthority(auth string, start int, pattern bool) error {
	if strings.IndexByte(auth, '@') >= 0 {
		return errors.New("has userinfo")
	}
	host, port, hasPort := auth, "", false
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return errors.New("has an unterminated IPv6 literal")
		}
		host = auth[:end+1]
		switch after := auth[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return errors.New("has junk after its IPv6 literal")
		}
	} else if i := strings.IndexByte(auth, ':'); i >= 0 {
		host, port, hasPort = auth[:i], auth[i+1:], true
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return errors.New("has an invalid port")
		}
		u.port = port
		u.portStart = start + len(host)
		u.portEnd = start + len(auth)
	}
	u.hostRaw = host
	return u.parseHost(host, pattern)
}

// parseHost accepts an IPv6 literal in brackets (no zone), or a DNS name of
// LDH labels (an IPv4 literal is one) given in ASCII. Percent-escapes,
// unicode and empty labels are refused.
func (u *strictURI) parseHost(host string, pattern bool) error {
	if host == "" {
		return nil // refused later for http(s); a custom scheme may lack one
	}
	if host[0] == '[' {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("has an invalid IPv6 literal")
		}
		u.host, u.addr, u.isIP = a.String(), a, true
		if a.IsUnspecified() {
			return errors.New("has the unspecified address as host")
		}
		return nil
	}
	if len(host) > 253 {
		return errors.New("has a host name longer than 253 bytes")
	}
	lower := strings.ToLower(host)
	labels := strings.Split(lower, ".")
	for i, label := range labels {
		if label == "" || len(label) > 63 {
			return errors.New("has an empty or overlong host label")
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if c == '*' && pattern && i < len(labels)-1 {
				continue
			}
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return errors.New("has a host that is not an ASCII (punycode) DNS name or IP literal")
			}
		}
	}
	u.host = lower
	if a, err := netip.ParseAddr(lower); err == nil && a.Is4() {
		u.addr, u.isIP = a, true
		if a.IsUnspecified() {
			return errors.New("has the unspecified address as host")
		}
	}
	return nil
}

// checkPath refuses dot segments, raw or percent-encoded in any case (also
// double-encoded, %252e), encoded slashes and backslashes, and encoded
// control characters, overlong UTF-8 (%c0, %c1), and brackets (host-only
// delimiters).
func checkPath(path string) error {
	if strings.ContainsAny(path, "[]") {
		return errors.New("has a bracket in its path")
	}
	lower := strings.ToLower(path)
	for strings.Contains(lower, "%25") {
		lower = strings.ReplaceAll(lower, "%25", "%")
	}
	for i := 0; i+2 < len(lower); i++ {
		if lower[i] != '%' {
			continue
		}
		switch esc := lower[i+1 : i+3]; {
		case esc == "2f" || esc == "5c":
			return errors.New("has an encoded slash or backslash in its path")
		case esc[0] == '0' || esc[0] == '1' || esc == "7f":
			return errors.New("has an encoded control character in its path")
		case esc == "c0" || esc == "c1":
			return errors.New("has an overlong UTF-8 escape in its path")
		}
	}
	decoded := strings.ReplaceAll(lower, "%2e", ".")
	for seg := range strings.SplitSeq(decoded, "/") {
		if seg == "." || seg == ".." {
			return errors.New("has a dot segment in its path")
		}
	}
	return nil
}
