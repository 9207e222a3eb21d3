// client.mjs drives a cognitomcp-protected MCP server with the official
// TypeScript SDK (@modelcontextprotocol/sdk, pinned in package.json), as a
// real MCP client does: 401 → discovery → dynamic registration → PKCE
// authorization → token → MCP calls → refresh on 401.
//
// The "browser" is fetch with manual redirects and a cookie jar: it approves
// the consent page and fills the fake Cognito's sign-in form, then reads the
// code from the redirect to the client's loopback redirect URI, which is
// never served.
//
//   node client.mjs <mcp URL>
//   E2E_USERS='[{"username":"alice","password":"…"},…]'  users to sign in, in order
//   E2E_STEP_TIMEOUT_MS=20000                            bound on each step
//
// It prints one JSON object on stdout (what every run saw; tsclient_test.go
// asserts on it) and progress on stderr. Any failed step exits 1 with a line
// "client.mjs: <step>: <error>".
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { randomBytes } from 'node:crypto';

const mcpURL = new URL(process.argv[2] ?? '');
const users = JSON.parse(process.env.E2E_USERS ?? '[]');
const stepTimeout = Number(process.env.E2E_STEP_TIMEOUT_MS ?? 20000);
// The client's redirect URI: a loopback URL nobody listens on (RFC 8252).
const redirectURL = 'http://127.0.0.1:9/callback';

const log = (...args) => console.error('client.mjs:', ...args);

class StepError extends Error {}

// step runs fn, bounded by stepTimeout, and names the step in any error.
async function step(name, fn) {
  log(name);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepError(`timed out after ${stepTimeout} ms`)), stepTimeout);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } catch (err) {
    throw new StepError(`${name}: ${err instanceof StepError ? err.message : err?.stack ?? err}`);
  } finally {
    clearTimeout(timer);
  }
}

// recordingFetch is the SDK's fetch: it logs every request the SDK makes
// (MCP, discovery, registration, token) with its status and, for /token,
// the grant type.
function recordingFetch(requests) {
  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init.method ?? (input instanceof Request ? input.method : 'GET');
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    const entry = { method, url: url.href, path: url.pathname, auth: headers.has('authorization') };
    if (url.pathname.endsWith('/token') && init.body !== undefined) {
      entry.grant_type = new URLSearchParams(String(init.body)).get('grant_type');
    }
    if (method === 'POST' && url.href === mcpURL.href && typeof init.body === 'string') {
      try {
        entry.rpc = JSON.parse(init.body).method;
      } catch {
        // not JSON-RPC: leave rpc unset
      }
    }
    requests.push(entry);
    const res = await fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(stepTimeout) });
    entry.status = res.status;
    return res;
  };
}

// Browser is fetch with a cookie jar and no automatic redirects, so each
// hop of the sign-in is visible in hops.
class Browser {
  constructor() {
    this.cookies = new Map(); // "host name path" → {name, value, host, path}
    this.hops = [];
  }

  cookieHeader(url) {
    const out = [];
    for (const c of this.cookies.values()) {
      if (c.host === url.hostname && url.pathname.startsWith(c.path)) out.push(`${c.name}=${c.value}`);
    }
    return out.join('; ');
  }

  storeCookies(url, res) {
    if (typeof res.headers.getSetCookie !== 'function') throw new Error(`Headers.getSetCookie missing: Node.js ${process.version} is too old, use 20+`);
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const c = { name: pair.slice(0, eq), value: pair.slice(eq + 1), host: url.hostname, path: '/' };
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.toLowerCase();
        if (key === 'path') c.path = v || '/';
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${c.host} ${c.name} ${c.path}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, c);
    }
  }

  async request(method, url, form) {
    url = new URL(url);
    const headers = { accept: 'text/html' };
    const cookie = this.cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(stepTimeout) });
    this.storeCookies(url, res);
    const text = await res.text();
    const location = res.headers.get('location');
    const hop = { method, url: url.href, path: url.pathname, status: res.status };
    if (location) hop.location = new URL(location, url).href;
    this.hops.push(hop);
    return { status: res.status, location: hop.location, text, url };
  }
}

const entities = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
function unescapeHTML(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return entities[e.toLowerCase()] ?? m;
  });
}

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`, 'i'));
  return m ? unescapeHTML(m[1]) : undefined;
}

// parseForm returns the first form of an HTML page: its absolute action
// and its hidden fields.
function parseForm(page) {
  const form = page.text.match(/<form\b[^>]*>/i);
  if (!form) throw new Error(`no form in the page at ${page.url}: ${page.text.slice(0, 300)}`);
  const fields = {};
  for (const [input] of page.text.matchAll(/<input\b[^>]*>/gi)) {
    if ((attr(input, 'type') ?? '').toLowerCase() === 'hidden') fields[attr(input, 'name')] = attr(input, 'value') ?? '';
  }
  return { action: new URL(attr(form[0], 'action') ?? '', page.url).href, fields, html: page.text };
}

// signIn is what a user does in the browser after redirectToAuthorization:
// approve the consent page, sign in to Cognito, land on the redirect URI.
async function signIn(browser, authorizationURL, user) {
  let page = await browser.request('GET', authorizationURL);
  const consent = { seen: false };
  for (let i = 0; i < 12; i++) {
    if (page.status >= 300 && page.status < 400) {
      if (page.location.startsWith(redirectURL)) return { params: Object.fromEntries(new URL(page.location).searchParams), consent };
      page = await browser.request('GET', page.location);
      continue;
    }
    if (page.status !== 200) throw new Error(`${page.url} answered ${page.status}: ${page.text.slice(0, 300)}`);
    const form = parseForm(page);
    if ('csrf' in form.fields) {
      // The proxy's consent page.
      consent.seen = true;
      consent.client_name = unescapeHTML(page.text.match(/id="client-name">([^<]*)</)?.[1] ?? '');
      consent.scopes = [...page.text.matchAll(/<li>[^<]*<code>([^<]*)<\/code><\/li>/g)].map((m) => unescapeHTML(m[1]));
      page = await browser.request('POST', form.action, { ...form.fields, action: 'approve' });
    } else if (/name="username"/.test(page.text)) {
      // The (fake) Cognito sign-in form, which shows it again on a bad password.
      const refused = page.text.match(/id="loginErrorMessage"[^>]*>([^<]*)</);
      if (refused) throw new Error(`Cognito refused ${user.username}'s sign-in: ${unescapeHTML(refused[1])}`);
      page = await browser.request('POST', form.action, {
        ...form.fields, username: user.username, password: user.password, signInSubmitButton: 'Sign in',
      });
    } else {
      throw new Error(`unexpected page at ${page.url}: ${page.text.slice(0, 300)}`);
    }
  }
  throw new Error('too many hops without reaching the redirect URI');
}

// TestProvider is an OAuthClientProvider kept in memory that signs in
// through Browser when the SDK asks it to redirect.
class TestProvider {
  constructor(user) {
    this.user = user;
    this.browser = new Browser();
    this.invalidated = [];
  }
  get redirectUrl() { return redirectURL; }
  get clientMetadata() {
    return {
      client_name: 'cognitomcp e2e (TypeScript SDK)',
      redirect_uris: [redirectURL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this.lastState = randomBytes(16).toString('base64url');
    return this.lastState;
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.savedTokens; }
  saveTokens(tokens) { this.savedTokens = tokens; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'client') this.client = undefined;
    if (scope === 'all' || scope === 'tokens') this.savedTokens = undefined;
  }
  async redirectToAuthorization(url) {
    this.authorizationURL = url.href;
    const { params, consent } = await signIn(this.browser, url.href, this.user);
    if (params.error) throw new Error(`authorization failed: ${params.error}: ${params.error_description ?? ''}`);
    if (params.state !== this.lastState) throw new Error(`state ${params.state} came back, sent ${this.lastState}`);
    this.code = params.code;
    this.callback = params;
    this.consent = consent;
  }
}

function toolText(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

function toolResult(result) {
  let data = result.structuredContent;
  if (data === undefined) {
    try {
      data = JSON.parse(toolText(result));
    } catch {
      data = null;
    }
  }
  return { isError: result.isError === true, text: toolText(result), data };
}

async function connect(provider, requests) {
  const transport = new StreamableHTTPClientTransport(mcpURL, { authProvider: provider, fetch: recordingFetch(requests) });
  const client = new Client({ name: 'cognitomcp-e2e', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

// run signs user in and calls the tools; alice also forces a refresh.
async function run(user, index) {
  const who = `${user.username}:`;
  const provider = new TestProvider(user);
  const requests = [];
  const out = { user: user.username, requests };

  // 1. Unauthenticated connect: 401, discovery, registration, then the
  //    provider signs in; connect throws UnauthorizedError as the SDK does.
  const first = new StreamableHTTPClientTransport(mcpURL, { authProvider: provider, fetch: recordingFetch(requests) });
  await step(`${who} connect without a token`, async () => {
    try {
      await new Client({ name: 'cognitomcp-e2e', version: '1.0.0' }).connect(first);
    } catch (err) {
      if (err instanceof UnauthorizedError) return;
      throw err;
    }
    throw new Error('connect succeeded without signing in');
  });
  if (!provider.code) throw new StepError(`${who} no authorization code after the sign-in`);
  out.client_id = provider.client?.client_id;
  out.authorization_url = provider.authorizationURL;
  out.callback = provider.callback;
  out.consent = provider.consent;
  out.hops = provider.browser.hops;

  // 2. The code for tokens, on the same transport; then a new one.
  await step(`${who} finishAuth`, () => first.finishAuth(provider.code));
  await first.close();
  out.token_type = provider.tokens()?.token_type;
  out.has_refresh_token = Boolean(provider.tokens()?.refresh_token);
  const { client } = await step(`${who} connect with the token`, () => connect(provider, requests));
  try {
    const tools = await step(`${who} tools/list`, () => client.listTools());
    out.tools = tools.tools.map((t) => t.name).sort();
    out.whoami = toolResult(await step(`${who} tools/call whoami`, () => client.callTool({ name: 'whoami', arguments: {} })));
    out.admin_report = toolResult(await step(`${who} tools/call admin_report`, () => client.callTool({ name: 'admin_report', arguments: {} })));

    if (index === 0) {
      // 3. A dead access token, a live refresh token: the next call gets a
      //    401 and the SDK refreshes, then retries.
      const before = provider.tokens();
      provider.saveTokens({ ...before, access_token: `garbage-${randomBytes(8).toString('hex')}` });
      const mark = requests.length;
      out.whoami_after_refresh = toolResult(await step(`${who} tools/call whoami after the access token broke`,
        () => client.callTool({ name: 'whoami', arguments: {} })));
      out.refresh_requests = requests.slice(mark);
      out.access_token_renewed = Boolean(provider.tokens()?.access_token) &&
        !provider.tokens().access_token.startsWith('garbage-') && provider.tokens().access_token !== before.access_token;
    }
  } finally {
    await client.close();
  }
  out.invalidated = provider.invalidated;
  return out;
}

async function main() {
  if (!users.length) throw new StepError('E2E_USERS is empty');
  const runs = [];
  for (const [i, user] of users.entries()) runs.push(await run(user, i));
  process.stdout.write(`${JSON.stringify({ runs })}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`client.mjs: ${err instanceof StepError ? err.message : err?.stack ?? err}`);
    process.exit(1);
  },
);
