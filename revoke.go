package cognitomcp

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// handleRevoke is the revocation endpoint (RFC 7009). A refresh token
// revokes its whole family (the grant) and Cognito's refresh token
// upstream; an access token is revoked by its jti until it expires. An
// unknown or malformed token gets 200, as the RFC says; a revocation the
// store could not record gets 503, so that the client tries again
// (§2.2.1). token_type_hint is not needed: the two kinds of token cannot
// be mistaken for each other, so both are always looked for (§2.1).
func (p *Proxy) handleRevoke(w http.ResponseWriter, r *http.Request) {
	form, client, ok := p.clientRequest(w, r)
	if !ok {
		return
	}
	token := form.Get("token")
	if token == "" {
		p.tokenError(w, r, oauthError(http.StatusBadRequest, CodeInvalidRequest, "token is required", nil))
		return
	}
	found, err := p.revokeRefreshToken(r.Context(), client, token)
	if !found {
		err = p.revokeAccessToken(r.Context(), client, token)
	}
	if err != nil {
		p.tokenError(w, r, asError(err), "mcp_client", truncate(client.ID, 200))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// revokeRefreshToken revokes the family of a refresh token of client,
// under the grant's lock, so that a refresh in flight cannot store the
// grant again after it is gone. It reports whether token was shaped as a
// refresh token.
func (p *Proxy) revokeRefreshToken(ctx context.Context, client *clientRecord, token string) (bool, error) {
	gid, gen, mac, ok := parseRefreshToken(token)
	if !ok {
		return false, nil
	}
	return true, p.withGrantLock(ctx, gid, func(ctx context.Context) error {
		var g grantRecord
		if err := p.get(ctx, storeKey(kindGrant, gid), &g); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // already gone
			}
			return err
		}
		if !hmac.Equal(mac, refreshMAC(&g, gen)) || g.ClientID != client.ID {
			return nil // not this client's token: nothing to do, and nothing to tell
		}
		return p.revokeGrant(ctx, &g, "revoked by the client")
	})
}

// revokeAccessToken marks a proxy access token of client revoked until it
// expires. This replica forgets it at once; others within
// RevocationCheckInterval. A token that is not one of client's live access
// tokens is left alone.
func (p *Proxy) revokeAccessToken(ctx context.Context, client *clientRecord, token string) error {
	var c proxyClaims
	if p.keys.signer.Verify(token, &c) != nil || c.Issuer != p.issuer || c.ClientID != client.ID || c.ID == "" {
		return nil
	}
	now := p.now()
	until := time.Unix(c.Expiry, 0).Add(proxyTokenSkew) // it is taken up to then
	if !now.Before(until) {
		return nil
	}
	if !p.revokedTokensHere.add(c.ID, until, now) { // before the store, for a check of it in flight here
		p.logger.Warn("cognitomcp: too many recent revocations to remember; this one holds on other requests within RevocationCheckInterval", "max", maxRevokedHere)
	}
	if err := p.put(ctx, storeKey(kindRevoked, c.ID), true, until.Sub(now)+time.Minute); err != nil {
		return err
	}
	// Stored: only a check in flight from before needs the local entry, for
	// as long as one can run (waiting for a grant's lock, then working).
	if short := now.Add(lockWait + lockTTL); short.Before(until) {
		p.revokedTokensHere.add(c.ID, short, now)
	}
	p.tokens.delete(token)
	p.logger.Info("cognitomcp: access token revoked", "mcp_client", truncate(client.ID, 200), "sub", c.Subject)
	return nil
}

// revokeUpstream revokes a Cognito refresh token at the pool's revocation
// endpoint, authenticated as the proxy's app client: with HTTP Basic when
// the client has a secret, which Cognito requires there whatever
// ClientAuthMethod says for the token endpoint, and with client_id in the
// body when it has none.
func (p *Proxy) revokeUpstream(ctx context.Context, refreshToken string) error {
	if p.upstreamRevoke == "" {
		return errors.New("the pool names no revocation endpoint")
	}
	form := url.Values{"token": {refreshToken}}
	if p.upstreamSecret == "" {
		form.Set("client_id", p.upstreamClientID)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.upstreamRevoke, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p.upstreamSecret != "" {
		req.SetBasicAuth(url.QueryEscape(p.upstreamClientID), url.QueryEscape(p.upstreamSecret))
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("cognito revocation endpoint unreachable: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cognito revocation endpoint: status %d", resp.StatusCode)
	}
	return nil
}
