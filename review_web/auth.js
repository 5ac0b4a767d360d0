// Sign-in for the deployed page: Cognito's hosted UI with the OAuth 2.0 authorization-code flow and PKCE
// (RFC 7636). No SDK: the browser's own crypto and fetch. Tokens live in sessionStorage (gone with the tab).
//
// - The redirect URI is the one the app client allows, from config.json (`cognito.redirectUri`, the stack writes
//   the client's callback URL there): the page may be opened at /index.html, Cognito accepts only that URI.
// - The API gets the ID token: it carries the reviewer's e-mail and groups (review_api/identity.py explains why
//   not the access token).
// - Tokens last an hour; the refresh token (12 hours) renews them with a background request, so a reviewer is not
//   sent back to sign-in during the working day and keeps their place and undo history.

const TOKEN_KEY = "review.tokens";
const FLOW_KEY = "review.pkce";
const RENEW_BEFORE_SECONDS = 60; // renew this long before the ID token expires

class TokenError extends Error {
  constructor(status, text) {
    super(`token endpoint answered ${status}: ${text}`);
    this.status = status;
  }
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

export function redirectUri(cognito) {
  return cognito.redirectUri || `${window.location.origin}/`;
}

function stored() {
  return JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
}

function store(tokens, previous = {}) {
  const saved = {
    id: tokens.id_token,
    access: tokens.access_token,
    // Cognito returns a refresh token with the code, not with a refresh (unless rotation is on): keep the first.
    refresh: tokens.refresh_token || previous.refresh || null,
    expiresAt: Date.now() + (tokens.expires_in - RENEW_BEFORE_SECONDS) * 1000,
  };
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(saved));
  return saved;
}

async function tokenRequest(cognito, fields) {
  const response = await fetch(`${cognito.domain}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: cognito.clientId, ...fields }),
  });
  if (!response.ok) throw new TokenError(response.status, await response.text());
  return response.json();
}

async function startSignIn(cognito) {
  const verifier = randomString(48);
  const state = randomString(16);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: cognito.clientId,
    redirect_uri: redirectUri(cognito),
    scope: cognito.scopes || "openid email profile",
    state,
    code_challenge_method: "S256",
    code_challenge: challenge,
  });
  window.location.assign(`${cognito.domain}/oauth2/authorize?${query}`);
}

async function finishSignIn(cognito, params) {
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) || "null");
  sessionStorage.removeItem(FLOW_KEY);
  if (!flow || flow.state !== params.get("state")) {
    throw new Error("sign-in answer does not match this tab's sign-in request: start again");
  }
  const tokens = await tokenRequest(cognito, {
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: redirectUri(cognito),
    code_verifier: flow.verifier,
  });
  store(tokens);
  window.history.replaceState(null, "", redirectUri(cognito));
}

async function refresh(cognito, previous) {
  const tokens = await tokenRequest(cognito, { grant_type: "refresh_token", refresh_token: previous.refresh });
  return store(tokens, previous);
}

// The ID token for the API: the stored one, a renewed one (refresh token), or a sign-in (navigates away and never
// resolves then). `force` renews even a token that has not expired (the API refused it). Requests made while a
// renewal or a sign-in is under way wait for that one: two sign-ins at once would leave the second's PKCE state
// in the tab while Cognito answers the first.
let pending = null;

export async function idToken(cognito, { force = false } = {}) {
  if (pending) return pending;
  const params = new URLSearchParams(window.location.search);
  if (params.has("error")) throw new Error(`sign-in refused: ${params.get("error_description") || params.get("error")}`);
  const tokens = stored();
  if (!params.has("code") && tokens && !force && tokens.expiresAt > Date.now()) return tokens.id;
  pending = renew(cognito, params, tokens);
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

async function renew(cognito, params, tokens) {
  if (params.has("code")) {
    await finishSignIn(cognito, params);
    return stored().id;
  }
  if (tokens && tokens.refresh) {
    try {
      return (await refresh(cognito, tokens)).id;
    } catch (error) {
      // 400 invalid_grant: the refresh token expired (the working day is over) or was revoked: sign in again.
      if (!(error instanceof TokenError) || error.status !== 400) throw error;
    }
  }
  sessionStorage.removeItem(TOKEN_KEY);
  await startSignIn(cognito);
  return new Promise(() => {});
}

export function signOut(cognito) {
  const tokens = stored();
  sessionStorage.removeItem(TOKEN_KEY);
  if (tokens && tokens.refresh) {
    // Revoke the refresh token (the client enables revocation) so a copy of it stops working too.
    fetch(`${cognito.domain}/oauth2/revoke`, {
      method: "POST",
      keepalive: true,
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: tokens.refresh, client_id: cognito.clientId }),
    }).catch(() => {});
  }
  const query = new URLSearchParams({ client_id: cognito.clientId, logout_uri: redirectUri(cognito) });
  window.location.assign(`${cognito.domain}/logout?${query}`);
}
