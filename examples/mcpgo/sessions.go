package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/server"

	"github.com/cognitomcp/cognitomcp"
)

// Session IDs are bound to the Cognito user who opened the session (MCP
// security best practices, session hijacking: "<user_id>:<session_id>"), so
// that a session ID leaked to another user is useless with that user's
// token. An ID is its user's tag, then 128 random bits; a request whose
// token names another user gets 404, as for an unknown session. The tag is
// checked without memory: any replica checks any ID, and nothing grows with
// the number of sessions.

// userSessions is the server.SessionIdManagerResolver that gives each
// request the session IDs of its user.
type userSessions struct{}

// ResolveSessionIdManager returns the session IDs of r's user.
func (userSessions) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	return sessionIDs{tag: userTag(r)}
}

// sessionIDs is the server.SessionIdManager of one user's sessions; an empty
// tag (no user) validates no ID.
type sessionIDs struct{ tag string }

var errOtherUser = errors.New("not a session of this user")

// Generate returns a new session ID of the user.
func (m sessionIDs) Generate() string { return m.tag + rand.Text() }

// Validate accepts the user's session IDs only.
func (m sessionIDs) Validate(id string) (isTerminated bool, err error) {
	if m.tag == "" || !strings.HasPrefix(id, m.tag) {
		return false, errOtherUser
	}
	return false, nil
}

// Terminate lets mcp-go end a session: bindSessions has checked whose it is.
func (sessionIDs) Terminate(string) (isNotAllowed bool, err error) { return false, nil }

// userTag is the prefix of the session IDs of r's user, or "" without one
// (r is nil when mcp-go ends idle sessions). It hashes the sub, which then
// does not show in the IDs that clients and proxies log.
func userTag(r *http.Request) string {
	if r == nil {
		return ""
	}
	c, ok := cognitomcp.ClaimsFromContext(r.Context())
	if !ok || c.Subject == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c.Subject))
	return base64.RawURLEncoding.EncodeToString(sum[:16]) + "."
}

// bindSessions answers 404 to a request that names another user's session.
// mcp-go validates the session ID of a POST, but not that of a GET, which
// would attach to the session's event stream, nor of a DELETE, which would
// end the session.
func bindSessions(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(server.HeaderKeySessionID); id != "" {
			if _, err := (sessionIDs{tag: userTag(r)}).Validate(id); err != nil {
				http.Error(w, "session not found", http.StatusNotFound)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
