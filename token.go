package cognitomcp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

const (
	// upstreamMargin: Cognito's access token is refreshed when it has less
	// than this left.
	upstreamMargin = 5 * time.Minute
	// lockWait bounds how long a request waits for another replica's
	// refresh of the same grant.
	lockWait = 10 * time.Second
	// usedCodeTTL is how long a code is remembered from its minting, so a
	// replay revokes what it issued (RFC 6749 §4.1.2): its life, then ten
	// minutes.
	usedCodeTTL = codeTTL + 10*time.Minute
)

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// proxyClaims are the claims of the proxy's access tokens.
type proxyClaims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	ID       string `json:"jti"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	GrantID  string `json:"gid"`
}

// handleToken is the token endpoint: authorization_code and refresh_token
// grants for public clients. invalid_grant and invalid_client are 401 (MCP);
// other errors 400; a store or Cognito outage 503.
func (p *Proxy) handleToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	form, client, ok := p.clientRequest(w, r)
	if !ok {
		return
	}
	var resp *tokenResponse
	var e *Error
	switch form.Get("grant_type") {
	case "authorization_code":
		resp, e = p.redeemCode(r.Context(), client, form)
	case "refresh_token":
		resp, e = p.refresh(r.Context(), client, form)
	case "":
		e = oauthError(http.StatusBadRequest, CodeInvalidRequest, "grant_type is required", nil)
	default:
		e = oauthError(http.StatusBadRequest, CodeUnsupportedGrantType, "only authorization_code and refresh_token are supported", nil)
	}
	if e != nil {
		p.tokenError(w, r, e, "mcp_client", truncate(client.ID, 200))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// clientRequest is the common start of /token and /revoke: no caching, the
// per-IP limit, the form, and the client. On failure it has answered.
func (p *Proxy) clientRequest(w http.ResponseWriter, r *http.Request) (url.Values, *clientRecord, bool) {
	w.Header().Set("Cache-Control", "no-store")
	if !p.limits.token.allow(p.clientIP(r)) {
		setRetryAfter(w, p.limits.token)
		p.tokenError(w, r, rateLimited())
		return nil, nil, false
	}
	form, e := parseForm(w, r)
	if e == nil {
		var client *clientRecord
		if client, e = p.authenticateClient(r, form); e == nil {
			return form, client, true
		}
	}
	p.tokenError(w, r, e)
	return nil, nil, false
}

func (p *Proxy) tokenError(w http.ResponseWriter, r *http.Request, e *Error, attrs ...any) {
	p.logRefusal(r, e, attrs...)
	if _, _, basic := r.BasicAuth(); basic && e.Status == http.StatusUnauthorized {
		// RFC 6749 §5.2: a client that authenticated with the Authorization
		// header gets a 401 with a challenge of the same scheme.
		w.Header().Set("WWW-Authenticate", `Basic realm="`+p.issuer+`"`)
	}
	writeOAuthError(w, e)
}

// authenticateClient identifies the (public) client: client_id in the body,
// or as the user of HTTP Basic; both must agree when both are sent.
func (p *Proxy) authenticateClient(r *http.Request, form url.Values) (*clientRecord, *Error) {
	id := form.Get("client_id")
	if user, _, ok := r.BasicAuth(); ok {
		basicID, err := url.QueryUnescape(user)
		if err != nil || (id != "" && id != basicID) {
			return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "client_id differs between the body and the Authorization header", nil)
		}
		id = basicID
	}
	if id == "" {
		return nil, oauthError(http.StatusUnauthorized, CodeInvalidClient, "client_id is required", nil)
	}
	c, err := p.lookupClient(r.Context(), id)
	switch {
	case errors.Is(err, ErrUnavailable):
		return nil, asError(err)
	case errors.Is(err, errInvalidClientMetadata):
		return nil, oauthError(http.StatusUnauthorized, CodeInvalidClient, "the client's metadata document is not usable", fmt.Errorf("client %.200q: %w", id, err))
	case err != nil:
		return nil, oauthError(http.StatusUnauthorized, CodeInvalidClient, "unknown client; register again", fmt.Errorf("client %.200q: %w", id, err))
	}
	return c, nil
}

var errBadGrant = oauthError(http.StatusUnauthorized, CodeInvalidGrant, "the grant is invalid, expired or revoked", nil)

// badGrant is errBadGrant with a cause for the log.
func badGrant(format string, args ...any) *Error {
	e := *errBadGrant
	e.Err = fmt.Errorf(format, args...)
	return &e
}

// redeemCode is the authorization_code grant (RFC 6749 §4.1.3, RFC 7636
// §4.6, RFC 8707 §2.2). The code is taken atomically, under its grant's
// lock: of concurrent redemptions one wins, and whoever comes after it
// (a replay, however soon) finds the grant it started. A replayed code
// revokes what it issued; the callback stored which grant a code is for
// when it minted the code, so a replay finds it after the code is gone.
func (p *Proxy) redeemCode(ctx context.Context, client *clientRecord, form url.Values) (*tokenResponse, *Error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	switch {
	case code == "":
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code is required", nil)
	case len(code) > 128: // no code of this server's
		return nil, badGrant("code unknown, expired or already used")
	case verifier == "":
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code_verifier is required (PKCE)", nil)
	case len(verifier) < 43 || len(verifier) > 128 || !isUnreserved(verifier, true):
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "code_verifier must be 43 to 128 unreserved characters", nil)
	}
	key := storeKey(kindCode, code)
	var rec codeRecord
	switch err := p.get(ctx, key, &rec); { // which grant: its lock comes before the take
	case errors.Is(err, ErrNotFound):
		return nil, p.codeUsedBefore(ctx, code)
	case err != nil:
		return nil, asError(err)
	}
	gid := rec.GrantID
	var g grantRecord
	var e *Error
	err := p.withGrantLock(ctx, gid, func(ctx context.Context) error {
		switch err := p.take(ctx, key, &rec); {
		case errors.Is(err, ErrNotFound): // redeemed since, and that redemption is over
			e = p.endGrantOfUsedCode(ctx, gid)
			return nil
		case err != nil:
			e = asError(err)
			return nil
		}
		if e = p.checkCode(&rec, client, form, verifier); e != nil {
			return nil
		}
		if err := p.get(ctx, storeKey(kindGrant, gid), &g); err != nil {
			e = grantLoadError(err)
			return nil
		}
		now := p.now()
		g.Generation, g.RotatedAt, g.RotatedScopes = 1, now, rec.Scopes
		if err := p.put(ctx, storeKey(kindGrant, g.ID), &g, g.ExpiresAt.Sub(now)); err != nil {
			e = asError(err)
		}
		return nil
	})
	switch {
	case err != nil: // the lock: the code is still there for the client's retry
		return nil, asError(err)
	case e != nil:
		return nil, e
	}
	p.clientUsed(ctx, client)
	return p.tokensFor(&g, g.Generation, g.RotatedAt, rec.Scopes)
}

// checkCode checks a taken code against the request: client, expiry,
// redirect_uri, PKCE S256, resource.
func (p *Proxy) checkCode(rec *codeRecord, client *clientRecord, form url.Values, verifier string) *Error {
	redirect := form.Get("redirect_uri")
	switch {
	case rec.ClientID != client.ID:
		return badGrant("code issued to another client")
	case !p.now().Before(rec.ExpiresAt):
		return badGrant("code expired")
	case rec.RedirectURIGiven && redirect != rec.RedirectURI, !rec.RedirectURIGiven && redirect != "" && redirect != rec.RedirectURI:
		return badGrant("redirect_uri differs from the authorization request's")
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(rec.CodeChallenge)) != 1:
		return badGrant("code_verifier does not match the code_challenge")
	}
	if _, e := p.checkResource(form.Get("resource"), rec.Resource); e != nil {
		return e
	}
	return nil
}

// s256 is BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// codeUsedBefore answers a code that is gone: never minted here, expired,
// or taken before. For a code minted here (the callback kept its grant
// id), the grant is ended if the code issued tokens, under the grant's
// lock like every revocation; if the lock cannot be had within lockWait (a
// refresh held up at a slow Cognito) without it rather than not at all (a
// refresh in flight could then store the grant again, but this replica
// refuses its tokens and Cognito's refresh token is revoked). The replaying
// request going away does not stop it.
func (p *Proxy) codeUsedBefore(ctx context.Context, code string) *Error {
	ctx = context.WithoutCancel(ctx)
	var gid string
	switch err := p.get(ctx, storeKey(kindUsed, code), &gid); {
	case errors.Is(err, ErrNotFound):
		return badGrant("code unknown, expired or already used")
	case err != nil:
		return asError(err)
	}
	var e *Error
	if err := p.withGrantLock(ctx, gid, func(ctx context.Context) error { e = p.endGrantOfUsedCode(ctx, gid); return nil }); err != nil {
		p.logger.Warn("cognitomcp: revoking the grant of a replayed code without its lock", "reason", err.Error())
		e = p.endGrantOfUsedCode(ctx, gid)
	}
	return e
}

// endGrantOfUsedCode is the answer to a code presented after it was taken,
// the grant's lock held: a replay when the code issued tokens (RFC 6749
// §4.1.2: they are revoked, and a revocation the store could not record is
// a 503, so that the replay comes again); otherwise the code was burned by
// a redemption that failed (a wrong verifier, the store), or expired, and
// there is nothing to revoke.
func (p *Proxy) endGrantOfUsedCode(ctx context.Context, gid string) *Error {
	var g grantRecord
	switch err := p.get(ctx, storeKey(kindGrant, gid), &g); {
	case errors.Is(err, ErrNotFound):
		return badGrant("code already used; its grant is gone")
	case err != nil:
		return asError(err)
	case g.Generation == 0:
		return badGrant("code already used or expired; it issued no tokens")
	}
	return p.revoked(ctx, &g, "authorization code replayed", badGrant("code replayed: what it issued is revoked"))
}

func grantLoadError(err error) *Error {
	if errors.Is(err, ErrNotFound) {
		return badGrant("grant revoked or expired")
	}
	return asError(err)
}

// refresh is the refresh_token grant with rotation (OAuth 2.1 §4.3.1, RFC
// 9700 §4.14.2). It runs under the grant's lock, shared by all replicas:
// the token of the current generation rotates; the previous one, presented
// again within the grace period, gets the same answer; any other old one
// revokes the family.
func (p *Proxy) refresh(ctx context.Context, client *clientRecord, form url.Values) (*tokenResponse, *Error) {
	if form.Get("refresh_token") == "" { // RFC 6749 §5.2: a missing parameter, not a dead token
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "refresh_token is required", nil)
	}
	gid, gen, mac, ok := parseRefreshToken(form.Get("refresh_token"))
	if !ok {
		return nil, badGrant("malformed refresh token")
	}
	var resp *tokenResponse
	var e *Error
	err := p.withGrantLock(ctx, gid, func(ctx context.Context) error {
		resp, e = p.refreshLocked(ctx, client, form, gid, gen, mac)
		return nil
	})
	if err != nil {
		return nil, asError(err)
	}
	if e == nil {
		p.clientUsed(ctx, client) // if marking it at the code's redemption failed
	}
	return resp, e
}

func (p *Proxy) refreshLocked(ctx context.Context, client *clientRecord, form url.Values, gid string, gen int, mac []byte) (*tokenResponse, *Error) {
	var g grantRecord
	if err := p.get(ctx, storeKey(kindGrant, gid), &g); err != nil {
		return nil, grantLoadError(err)
	}
	stored := g.Upstream.RefreshToken
	// A grant is bound to this server's resource, the only one /authorize
	// accepts; one stored before BaseURL was used in its canonical form
	// (or before MCPPath changed) names it in another form, and its access
	// tokens would carry an aud this server refuses.
	g.Resource = p.resource
	now := p.now()
	switch {
	case !hmac.Equal(mac, refreshMAC(&g, gen)):
		return nil, badGrant("refresh token signature")
	case g.ClientID != client.ID:
		return nil, badGrant("refresh token of another client")
	case !now.Before(g.ExpiresAt):
		return nil, badGrant("refresh token expired")
	case p.revokedHere.has(g.ID, now):
		// Revoked here, but the store could not delete it then: again
		// now, for the other replicas, which honour it while it is there.
		if err := p.del(ctx, storeKey(kindGrant, g.ID)); err != nil {
			return nil, asError(err)
		}
		return nil, badGrant("grant revoked")
	case gen == g.Generation-1 && now.Sub(g.RotatedAt) <= p.grace:
		p.logger.Info("cognitomcp: duplicate refresh within the grace period; same answer", "mcp_client", truncate(g.ClientID, 200))
		return p.tokensFor(&g, g.Generation, g.RotatedAt, g.RotatedScopes)
	case gen < g.Generation:
		return nil, p.revoked(ctx, &g, "refresh token replayed", badGrant("refresh token replayed: family revoked"))
	case gen > g.Generation:
		// Only this server mints a generation (the MAC binds it), so a
		// newer one than the store holds means the store lost a write (a
		// failover): carry on from the client's, which is no replay.
		p.logger.Warn("cognitomcp: the store lost a refresh token rotation; carrying on from the client's", "mcp_client", truncate(g.ClientID, 200))
		g.Generation = gen
	}
	scopes := g.Scopes
	if s := form.Get("scope"); s != "" {
		scopes = requestedScopes(s) // as at /authorize
		if missing := missingScopes(g.Scopes, scopes); len(missing) > 0 {
			return nil, oauthError(http.StatusBadRequest, CodeInvalidScope, "a refresh can only narrow the scope", nil)
		}
		if len(scopes) == 0 {
			scopes = g.Scopes
		}
	}
	if _, e := p.checkResource(form.Get("resource"), g.Resource); e != nil {
		return nil, e
	}
	if e := p.refreshUpstreamIfDue(ctx, &g, now); e != nil {
		return nil, e
	}
	if scopes = scopesIn(scopes, g.Scopes); len(scopes) == 0 {
		// Cognito withheld them just now. The grant is stored all the
		// same: it may hold Cognito's rotated refresh token.
		if err := p.putGrant(ctx, &g, stored, now); err != nil {
			return nil, asError(err)
		}
		return nil, oauthError(http.StatusBadRequest, CodeInvalidScope, "the identity provider no longer grants the requested scopes", nil)
	}
	g.Generation, g.RotatedAt, g.RotatedScopes = g.Generation+1, now, scopes
	if err := p.putGrant(ctx, &g, stored, now); err != nil {
		return nil, asError(err)
	}
	return p.tokensFor(&g, g.Generation, now, scopes)
}

// revoked is the answer to a request that found g must end: e, once the
// revocation is recorded in the store; a 503 when it could not be (the
// other replicas honour g while the store has it), so that the client
// tries again, and the revocation with it.
func (p *Proxy) revoked(ctx context.Context, g *grantRecord, reason string, e *Error) *Error {
	if err := p.revokeGrant(ctx, g, reason); err != nil {
		return asError(err)
	}
	return e
}

// putGrant stores g until its sign-in ends; stored is Cognito's refresh
// token as the store held it. A write that fails after Cognito rotated its
// refresh token (which Cognito then no longer takes) leaves the new one
// with this replica, for its next refresh of the grant: the client, told
// 503, tries again, and the sign-in goes on once the store does.
func (p *Proxy) putGrant(ctx context.Context, g *grantRecord, stored string, now time.Time) error {
	err := p.put(ctx, storeKey(kindGrant, g.ID), g, g.ExpiresAt.Sub(now))
	if err != nil && g.Upstream.RefreshToken != stored && !p.rotations.add(g.ID, stored, g.Upstream.RefreshToken, now) {
		p.logger.Error("cognitomcp: Cognito's rotated refresh token could not be stored nor kept here; the sign-in ends at its next refresh", "sub", g.User.Subject)
	}
	return err
}

// rotations holds Cognito refresh tokens a replica received but could not
// store: per grant, the one the store holds (from) and its successor (to),
// for an hour. At most maxRevokedHere.
type rotations struct{ grants recent[rotation] }

type rotation struct{ from, to string }

// add keeps to as the successor of from for gid, and reports whether it
// could (false when full).
func (r *rotations) add(gid, from, to string, now time.Time) bool {
	return r.grants.put(gid, rotation{from, to}, now.Add(time.Hour), now)
}

// take returns, and forgets, the successor kept for gid's refresh token
// from, if any.
func (r *rotations) take(gid, from string, now time.Time) (string, bool) {
	x, ok := r.grants.take(gid, now)
	return x.to, ok && x.from == from
}

// refreshUpstreamIfDue refreshes Cognito's tokens when its access token
// nears expiry. Cognito refusing the refresh token (the user was disabled
// or signed out everywhere) revokes the grant; Cognito unreachable is
// tolerated while its access token is still valid.
func (p *Proxy) refreshUpstreamIfDue(ctx context.Context, g *grantRecord, now time.Time) *Error {
	if g.Upstream.Expiry.Sub(now) > upstreamMargin {
		return nil
	}
	stored := g.Upstream.RefreshToken // g is as the store holds it
	if next, ok := p.rotations.take(g.ID, stored, now); ok {
		g.Upstream.RefreshToken = next // a rotation this replica could not store
	}
	err := p.refreshUpstream(ctx, g)
	if err == nil {
		return nil
	}
	var re *oauth2.RetrieveError
	reason := err
	if !errors.Is(err, errUpstreamVerify) {
		reason = upstreamError(err) // Cognito's own text stays out
	}
	switch {
	case errors.As(err, &re) && re.ErrorCode == CodeInvalidGrant:
		return p.revoked(ctx, g, "Cognito refused the refresh token", badGrant("cognito refused the refresh"))
	case errors.Is(err, errNoUpstreamRefresh), errors.Is(err, errScopesWithheld):
		return p.revoked(ctx, g, err.Error(), badGrant("%v", err))
	case now.Before(g.Upstream.Expiry): // the caller stores g, and a rotated refresh token with it
		p.logger.Warn("cognitomcp: Cognito refresh failed; its access token is still valid", "reason", reason.Error())
		return nil
	}
	if g.Upstream.RefreshToken != stored {
		// Cognito rotated its refresh token, then its tokens failed
		// verification: the new one is all Cognito takes now.
		if err := p.putGrant(ctx, g, stored, now); err != nil {
			p.logger.Error("cognitomcp: storing Cognito's rotated refresh token", "reason", err.Error())
		}
	}
	return oauthError(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "the identity provider is unavailable", reason)
}

// Why refreshUpstream failed, besides Cognito's own answer.
var (
	errNoUpstreamRefresh = errors.New("the sign-in holds no Cognito refresh token")
	errScopesWithheld    = errors.New("every scope of the sign-in now withheld by Cognito")
	errUpstreamVerify    = errors.New("refreshed Cognito tokens fail verification")
)

// refreshUpstream refreshes g's Cognito tokens and re-verifies them. Cognito
// usually sends no new refresh token; the old one is kept then. The grant
// keeps only the scopes Cognito's new access token holds (a pre-token
// generation trigger may withhold some since); none left is invalid_grant.
func (p *Proxy) refreshUpstream(ctx context.Context, g *grantRecord) error {
	if g.Upstream.RefreshToken == "" {
		return errNoUpstreamRefresh
	}
	uctx, cancel := p.upstreamContext(ctx)
	defer cancel()
	tok, err := p.upstream.TokenSource(uctx, &oauth2.Token{RefreshToken: g.Upstream.RefreshToken}).Token()
	if err != nil {
		return err
	}
	// Keep a rotated refresh token even if the tokens fail verification
	// below: Cognito no longer takes the old one.
	if tok.RefreshToken != "" {
		g.Upstream.RefreshToken = tok.RefreshToken
	}
	user, expiry, held, err := p.verifyUpstream(ctx, tok, "")
	if err != nil {
		return fmt.Errorf("%w: %w", errUpstreamVerify, err)
	}
	scopes := scopesIn(g.Scopes, held)
	if len(scopes) == 0 {
		return errScopesWithheld
	}
	g.User, g.Scopes = *user, scopes
	g.Upstream.Expiry = expiry
	p.logger.Info("cognitomcp: refreshed Cognito tokens", "sub", user.Subject, "mcp_client", truncate(g.ClientID, 200))
	return nil
}

// tokensFor mints the tokens of generation gen of g, issued at iat. The same
// inputs give the same refresh token and an access token with the same
// claims (the jti derives from the grant and generation; an ES256
// signature differs each time), which is what lets a duplicate refresh get
// the same answer.
func (p *Proxy) tokensFor(g *grantRecord, gen int, iat time.Time, scopes []string) (*tokenResponse, *Error) {
	exp := iat.Add(p.accessTTL)
	if g.ExpiresAt.Before(exp) {
		exp = g.ExpiresAt
	}
	scope := strings.Join(scopes, " ")
	at, err := p.keys.signer.Sign(&proxyClaims{
		Issuer: p.issuer, Audience: g.Resource, Subject: g.User.Subject, ClientID: g.ClientID, Scope: scope,
		ID: hashKey("jti", g.ID, strconv.Itoa(gen))[:32], IssuedAt: iat.Unix(), Expiry: exp.Unix(), GrantID: g.ID,
	})
	if err != nil {
		return nil, oauthError(http.StatusInternalServerError, CodeServerError, "internal error", err)
	}
	return &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: max(int64(exp.Sub(p.now())/time.Second), 1),
		RefreshToken: refreshToken(g, gen), Scope: scope}, nil
}

// refreshToken is generation gen of g's refresh-token family.
func refreshToken(g *grantRecord, gen int) string {
	return g.ID + "." + strconv.Itoa(gen) + "." + base64.RawURLEncoding.EncodeToString(refreshMAC(g, gen))
}

func refreshMAC(g *grantRecord, gen int) []byte {
	m := hmac.New(sha256.New, []byte(g.Secret))
	m.Write([]byte("cognitomcp refresh v1\x00" + g.ID + "\x00" + strconv.Itoa(gen)))
	return m.Sum(nil)
}

// parseRefreshToken splits a refresh token into grant id, generation, MAC.
func parseRefreshToken(raw string) (gid string, gen int, mac []byte, ok bool) {
	if len(raw) > 128 {
		return "", 0, nil, false
	}
	gid, rest, ok1 := strings.Cut(raw, ".")
	genStr, macStr, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(gid) != 22 || !isUnreserved(gid, false) || len(genStr) > 9 {
		return "", 0, nil, false
	}
	gen, err := strconv.Atoi(genStr)
	if err != nil || gen < 1 || strconv.Itoa(gen) != genStr {
		return "", 0, nil, false
	}
	mac, err = base64.RawURLEncoding.Strict().DecodeString(macStr)
	if err != nil || len(mac) != sha256.Size {
		return "", 0, nil, false
	}
	return gid, gen, mac, true
}

// withGrantLock runs fn under the lock of grant gid, shared by every
// replica: the rotations, Cognito refreshes and revocations of one sign-in
// never overlap. With a store's shared lock it waits at most lockWait.
// Waiting for the lock ends with ctx; once it is held, fn's context does
// not: work begun under the lock is finished even if the client goes away
// (Cognito may have rotated its refresh token, and a grant not stored
// would keep the old one, which Cognito no longer takes), and it ends
// before the lock could (see withLock).
func (p *Proxy) withGrantLock(ctx context.Context, gid string, fn func(ctx context.Context) error) error {
	return p.withLock(ctx, "grant:"+gid, lockWait, fn)
}

// revokeGrant ends a sign-in: the grant goes, so every refresh token of its
// family and every access token minted from it stop working, at once on
// this replica and within RevocationCheckInterval on the others, and
// Cognito's refresh token is revoked upstream. The caller holds the
// grant's lock. The error is the store's, when the grant could not be
// deleted: this replica refuses its tokens all the same until the grant
// expires (the others, which still find it, until a revocation succeeds),
// and Cognito's refresh token is revoked all the same.
func (p *Proxy) revokeGrant(ctx context.Context, g *grantRecord, reason string) error {
	err := p.del(ctx, storeKey(kindGrant, g.ID))
	now := p.now()
	until := now.Add(p.revocationCheck + proxyTokenSkew)
	if err != nil {
		p.logger.Error("cognitomcp: revoke grant", "reason", err.Error())
		if g.ExpiresAt.After(until) {
			until = g.ExpiresAt
		}
	}
	if !p.revokedHere.add(g.ID, until, now) {
		p.logger.Warn("cognitomcp: too many recent revocations to remember; this one holds on other requests within RevocationCheckInterval", "max", maxRevokedHere)
	}
	// A replay (a token perhaps stolen) stands out at Warn; a sign-out or
	// Cognito ending the sign-in is ordinary.
	level := slog.LevelInfo
	if strings.Contains(reason, "replayed") {
		level = slog.LevelWarn
	}
	p.logger.Log(ctx, level, "cognitomcp: grant revoked", "why", reason, "sub", g.User.Subject, "mcp_client", truncate(g.ClientID, 200))
	if g.Upstream.RefreshToken != "" {
		if err := p.revokeUpstream(ctx, g.Upstream.RefreshToken); err != nil {
			p.logger.Warn("cognitomcp: revoking Cognito's refresh token failed", "reason", err.Error())
		}
	}
	return err
}
