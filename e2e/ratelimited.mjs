// ratelimited.mjs asks the official TypeScript SDK's auth() to refresh a
// token at a cognitomcp proxy whose /token is rate-limited, and reports what
// the SDK did: an error it reports to its caller, or a new sign-in (its
// answer to an error it reads as the server's).
//
//   node ratelimited.mjs <mcp URL> <client id>
//
// It prints one JSON object on stdout: {result, error, errorName, redirected}.
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';

const [mcpURL, clientID] = process.argv.slice(2);
const provider = {
  redirected: false,
  get redirectUrl() { return 'http://127.0.0.1:9/callback'; },
  get clientMetadata() {
    return { client_name: 'rate-limited', redirect_uris: ['http://127.0.0.1:9/callback'], token_endpoint_auth_method: 'none' };
  },
  clientInformation() { return { client_id: clientID, redirect_uris: ['http://127.0.0.1:9/callback'] }; },
  saveClientInformation() {},
  tokens() { return { access_token: 'expired', token_type: 'Bearer', refresh_token: 'held-by-the-client' }; },
  saveTokens() {},
  saveCodeVerifier() {},
  codeVerifier() { return 'v'.repeat(43); },
  invalidateCredentials() {},
  redirectToAuthorization() { this.redirected = true; },
};

const out = { redirected: false };
try {
  out.result = await auth(provider, { serverUrl: mcpURL });
} catch (err) {
  out.error = String(err?.message ?? err);
  out.errorName = err?.constructor?.name;
}
out.redirected = provider.redirected;
process.stdout.write(`${JSON.stringify(out)}\n`);
