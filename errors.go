package cognitomcp

import (
	"errors"
	"net/http"
)

// Sentinel errors, for errors.Is. Every error the Verifier, the middleware
// and the proxy return wraps one of them, except a 500 server_error that a
// TokenVerifier of one's own caused. Every token failure also matches
// ErrInvalidToken.
var (
	ErrNoToken            = errors.New("cognitomcp: no bearer token")
	ErrInvalidRequest     = errors.New("cognitomcp: malformed authorization")
	ErrInvalidToken       = errors.New("cognitomcp: invalid token")
	ErrMalformedToken     = errors.New("cognitomcp: malformed token")
	ErrUnsupportedAlg     = errors.New("cognitomcp: unsupported signing algorithm")
	ErrUnknownKey         = errors.New("cognitomcp: unknown signing key")
	ErrInvalidSignature   = errors.New("cognitomcp: invalid signature")
	ErrWrongIssuer        = errors.New("cognitomcp: wrong issuer")
	ErrTokenExpired       = errors.New("cognitomcp: token expired")
	ErrTokenNotYetValid   = errors.New("cognitomcp: token not yet valid")
	ErrWrongTokenUse      = errors.New("cognitomcp: wrong token_use")
	ErrWrongClient        = errors.New("cognitomcp: app client not accepted")
	ErrWrongAudience      = errors.New("cognitomcp: token issued for another resource")
	ErrTokenRevoked       = errors.New("cognitomcp: token revoked")
	ErrInsufficientScope  = errors.New("cognitomcp: insufficient scope")
	ErrInsufficientGroups = errors.New("cognitomcp: insufficient group membership")
	ErrKeySetUnavailable  = errors.New("cognitomcp: signing keys unavailable")
	ErrUnavailable        = errors.New("cognitomcp: temporarily unavailable")
)

// OAuth error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591
// §3.2.2, RFC 8707).
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeAccessDenied            = "access_denied"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeInvalidScope            = "invalid_scope"
	CodeInvalidTarget           = "invalid_target"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeInvalidRedirectURI      = "invalid_redirect_uri"
	CodeInvalidClientMetadata   = "invalid_client_metadata"
)

// Error is a failure as the HTTP layer answers it: a status, an OAuth error
// code and a description that is safe to show to a client. The cause stays
// in Err, for logs and errors.Unwrap; it is never written to a response.
type Error struct {
	Status      int    // HTTP status: 400, 401, 403, 429, 503, …
	Code        string // OAuth error code, e.g. "invalid_token"
	Description string // safe for clients: no token, secret or upstream text
	Err         error  // the cause; wraps one of the sentinels
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "cognitomcp: " + e.Code
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every invalid_token Error match ErrInvalidToken, so callers can
// test for "any token failure" without listing the causes.
func (e *Error) Is(target error) bool {
	return target == ErrInvalidToken && e.Code == CodeInvalidToken
}

// tokenError returns a 401 invalid_token Error for cause.
func tokenError(cause error, description string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: description, Err: cause}
}

// tokenFailures are the sentinels of a token that is not valid: a verifier
// of one's own may return any of them bare.
var tokenFailures = []error{ErrMalformedToken, ErrUnsupportedAlg, ErrUnknownKey, ErrInvalidSignature, ErrWrongIssuer,
	ErrTokenExpired, ErrTokenNotYetValid, ErrWrongTokenUse, ErrWrongClient, ErrWrongAudience, ErrTokenRevoked}

func isTokenFailure(err error) bool {
	for _, s := range tokenFailures {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// asError returns err as an *Error, classifying anything else as a 500.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, ErrNoToken):
		return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: "a bearer token is required", Err: err}
	case errors.Is(err, ErrKeySetUnavailable), errors.Is(err, ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, Description: "the service is temporarily unavailable", Err: err}
	case errors.Is(err, ErrInvalidToken) || isTokenFailure(err):
		return tokenError(err, "invalid token")
	case errors.Is(err, ErrInvalidRequest):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: "malformed authorization", Err: err}
	case errors.Is(err, ErrInsufficientScope):
		return &Error{Status: http.StatusForbidden, Code: CodeInsufficientScope, Description: "the token lacks a required scope", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeServerError, Description: "internal error", Err: err}
}
