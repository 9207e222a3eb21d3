package cognitomcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// handleCallback is where Cognito's hosted UI sends the browser back. It
// takes the transaction (single use), checks that this browser started it,
// exchanges Cognito's code with the proxy's PKCE verifier, verifies
// Cognito's tokens at once (a misconfigured pool fails here, with a clear
// log line, not on the first MCP request), stores the grant sealed, and
// sends the client its own single-use code.
func (p *Proxy) handleCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		p.errorPage(w, r, oauthError(http.StatusMethodNotAllowed, CodeInvalidRequest, "method not allowed", nil))
		return
	}
	q := r.URL.Query()
	if e := singleValued(q); e != nil {
		p.errorPage(w, r, e)
		return
	}
	txnID := q.Get("state")
	if iss := q.Get("iss"); iss != "" && iss != p.upstreamIssuer {
		// RFC 9207: a response from another authorization server (mix-up).
		p.errorPage(w, r, oauthError(http.StatusBadRequest, CodeInvalidRequest, "This sign-in response came from an unexpected server.", fmt.Errorf("callback iss %.80q", iss)))
		return
	}
	txn, e := p.takeTransaction(r, txnID)
	if e != nil {
		p.errorPage(w, r, e)
		return
	}
	p.clearCookie(w, p.bindingCookie(txnID))
	p.clearCookie(w, p.csrfCookie(txnID)) // kept since the approval, to know a second Allow from this browser
	if upstreamErr := q.Get("error"); upstreamErr != "" {
		p.redirectError(w, r, txn.RedirectURI, txn.State, cognitoAuthorizeError(upstreamErr))
		return
	}
	grant, e := p.grantFromCognito(r.Context(), q.Get("code"), txn)
	if e != nil {
		p.redirectError(w, r, txn.RedirectURI, txn.State, e)
		return
	}
	code := randomToken(32)
	rec := codeRecord{GrantID: grant.ID, ClientID: txn.ClientID, RedirectURI: txn.RedirectURI, RedirectURIGiven: txn.RedirectURIGiven,
		CodeChallenge: txn.CodeChallenge, Scopes: grant.Scopes, Resource: txn.Resource, ExpiresAt: p.now().Add(codeTTL)}
	// Which grant the code is for, kept past the code so that a replay
	// revokes it (see redeemCode); stored first, so no code is out without it.
	err := p.put(r.Context(), storeKey(kindUsed, code), grant.ID, usedCodeTTL)
	if err == nil {
		err = p.put(r.Context(), storeKey(kindCode, code), &rec, codeTTL)
	}
	if err != nil {
		p.redirectError(w, r, txn.RedirectURI, txn.State, asError(err))
		return
	}
	p.logger.Info("cognitomcp: user signed in", "sub", grant.User.Subject, "username", grant.User.Username, "mcp_client", truncate(txn.ClientID, 200))
	out := url.Values{"code": {code}, "iss": {p.issuer}}
	if txn.State != "" {
		out.Set("state", txn.State)
	}
	p.redirectToClient(w, r, txn.RedirectURI, out)
}

// cognitoAuthorizeError is what the client is told of an error Cognito's
// authorization endpoint sent back: a denial stays access_denied (and is
// no server error in the log), an outage stays temporarily_unavailable (so
// the client retries), anything else is the proxy's server_error.
// Cognito's error_description is neither passed on nor logged.
func cognitoAuthorizeError(code string) *Error {
	err := fmt.Errorf("cognito answered error %.40q%s", code, cognitoHint(code))
	switch code {
	case CodeAccessDenied:
		return oauthError(http.StatusForbidden, CodeAccessDenied, "sign-in at the identity provider was denied", err)
	case CodeTemporarilyUnavailable:
		return oauthError(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "the identity provider is unavailable", err)
	}
	return oauthError(http.StatusBadGateway, CodeServerError, "sign-in at the identity provider did not complete", err)
}

// cognitoHint says, for an error code Cognito answers to a misconfigured
// proxy, what to check (for the log): Cognito's own text is not logged.
func cognitoHint(code string) string {
	switch code {
	case "invalid_client":
		return ": check ProxyConfig.ClientID, ClientSecret and ClientAuthMethod against the app client"
	case "invalid_scope":
		return ": openid and every scope of ProxyConfig.Scopes must be allowed on the app client"
	case "unauthorized_client":
		return ": the app client must allow the authorization code grant, and this callback URL"
	case "redirect_mismatch":
		return ": add Issuer()+CallbackPath to the app client's allowed callback URLs"
	}
	return ""
}

// takeTransaction takes the transaction named by state, once, and checks
// the browser-binding cookie set when the browser left for Cognito.
func (p *Proxy) takeTransaction(r *http.Request, txnID string) (*transaction, *Error) {
	if txnID == "" || len(txnID) > 64 {
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "This sign-in response is incomplete. Start again from your application.", nil)
	}
	// Check the cookie before taking, so a forged callback cannot burn
	// another browser's transaction.
	if err := p.checkBinding(r, txnID); err != nil {
		return nil, oauthError(http.StatusBadRequest, CodeAccessDenied, "This sign-in was started in another browser or has expired. Start again from your application.", err)
	}
	var txn transaction
	err := p.take(r.Context(), storeKey(kindTxn, txnID), &txn)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, oauthError(http.StatusBadRequest, CodeInvalidRequest, "This sign-in expired or was already used. Start again from your application.", err)
	case err != nil:
		return nil, asError(err)
	}
	return &txn, nil
}

// checkBinding checks the cookie that binds transaction txnID to this
// browser, set when the browser left for Cognito.
func (p *Proxy) checkBinding(r *http.Request, txnID string) error {
	name := p.bindingCookie(txnID)
	c, err := r.Cookie(name)
	if err != nil {
		return errors.New("binding cookie missing")
	}
	if v, err := p.keys.cookies.Verify(name, c.Value, p.now()); err != nil || v != hashKey("bind", txnID) {
		return errors.New("binding cookie invalid")
	}
	return nil
}

// grantFromCognito exchanges Cognito's code, verifies its tokens and stores
// the grant. Cognito's error text never reaches the client.
func (p *Proxy) grantFromCognito(ctx context.Context, code string, txn *transaction) (*grantRecord, *Error) {
	fail := func(msg string, err error) *Error {
		return oauthError(http.StatusBadGateway, CodeServerError, "sign-in at the identity provider failed", fmt.Errorf("%s: %w", msg, err))
	}
	if code == "" {
		return nil, fail("cognito callback", errors.New("no code"))
	}
	cfg := p.upstream
	cfg.Scopes = upstreamScopes(txn.Scopes)
	uctx, cancel := p.upstreamContext(ctx)
	defer cancel()
	tok, err := cfg.Exchange(uctx, code, oauth2.VerifierOption(txn.UpstreamVerifier))
	if err != nil {
		return nil, fail("exchange code at Cognito", upstreamError(err))
	}
	user, expiry, held, err := p.verifyUpstream(ctx, tok, txn.UpstreamNonce)
	switch {
	case errors.Is(err, ErrKeySetUnavailable): // Cognito's keys out of reach: the client may try again
		return nil, oauthError(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "the identity provider is unavailable", fmt.Errorf("verify Cognito tokens: %w", err))
	case err != nil:
		return nil, fail("Cognito's tokens failed verification at the callback (check ProxyConfig.ClientID and the pool)", err)
	}
	scopes := scopesIn(txn.Scopes, held) // a pre-token generation trigger may withhold some per user
	if len(scopes) == 0 {
		return nil, oauthError(http.StatusForbidden, CodeAccessDenied, "the identity provider granted none of the requested scopes",
			errors.New("cognito's access token holds none of the requested scopes"))
	}
	now := p.now()
	grant := &grantRecord{
		ID: randomToken(16), Secret: randomToken(32), ClientID: txn.ClientID, ClientName: txn.ClientName,
		Scopes: scopes, Resource: txn.Resource, User: *user,
		Upstream:  upstreamTokens{RefreshToken: tok.RefreshToken, Expiry: expiry},
		CreatedAt: now, ExpiresAt: now.Add(p.refreshTTL),
	}
	// Until its code is redeemed the grant lives as long as the code: a
	// sign-in the client never finishes does not keep Cognito's refresh
	// token in the store. redeemCode stores it again until ExpiresAt.
	if err := p.put(ctx, storeKey(kindGrant, grant.ID), grant, unredeemedGrantTTL); err != nil {
		return nil, asError(err)
	}
	return grant, nil
}

// upstreamTimeout bounds each call to Cognito's token endpoint even when
// ProxyConfig.HTTPClient has no Timeout: above the default client's 10 s,
// well inside lockTTL, so a refresh under the grant's lock ends before the
// lock.
const upstreamTimeout = 15 * time.Second

// upstreamContext carries the proxy's HTTP client to x/oauth2, with a
// deadline of upstreamTimeout at most.
func (p *Proxy) upstreamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	return context.WithValue(ctx, oauth2.HTTPClient, p.httpClient), cancel
}

// upstreamError keeps the OAuth error code of a Cognito token-endpoint
// failure and drops its body, which may echo request data.
func upstreamError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return fmt.Errorf("cognito token endpoint: status %d, error %.40q%s", status, re.ErrorCode, cognitoHint(re.ErrorCode))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cognito token endpoint unreachable: %w", ue.Err)
	}
	return errors.New("cognito token endpoint: malformed response")
}

// verifyUpstream verifies Cognito's access token and its ID token (with the
// nonce the proxy sent, when it sent one: the ID token is then required;
// at a refresh it may be absent), and returns the user's claims, the
// access token's expiry (its exp claim) and its scopes.
func (p *Proxy) verifyUpstream(ctx context.Context, tok *oauth2.Token, nonce string) (*userClaims, time.Time, []string, error) {
	fail := func(err error) (*userClaims, time.Time, []string, error) { return nil, time.Time{}, nil, err }
	access, err := p.verifier.Verify(ctx, tok.AccessToken)
	if err != nil {
		return fail(fmt.Errorf("access token: %w", err))
	}
	user := &userClaims{Subject: access.Subject, Username: access.Username, Groups: access.Groups,
		Issuer: access.Issuer, AppID: access.ClientID, Raw: access.raw}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		if nonce != "" { // the callback: openid is always asked, so Cognito sends one
			return fail(errors.New("no ID token to check the nonce against"))
		}
		return user, access.Expiry, access.Scopes, nil
	}
	id, err := p.idVerifier.Verify(ctx, rawID)
	if err != nil {
		return fail(fmt.Errorf("ID token: %w", err))
	}
	var extra struct {
		Nonce string `json:"nonce"`
	}
	if err := id.Decode(&extra); err != nil || (nonce != "" && extra.Nonce != nonce) {
		return fail(errors.New("ID token: nonce does not match"))
	}
	if id.Subject != access.Subject {
		return fail(errors.New("ID token: sub differs from the access token's"))
	}
	user.Email = id.Email
	user.Raw = mergeClaims(access.raw, id.raw)
	return user, access.Expiry, access.Scopes, nil
}

// mergeClaims merges two JSON objects; keys of b win.
func mergeClaims(a, b json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(a, &m) != nil {
		return b
	}
	var mb map[string]json.RawMessage
	if json.Unmarshal(b, &mb) != nil {
		return a
	}
	for k, v := range mb {
		m[k] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		return a
	}
	return out
}
