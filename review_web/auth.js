// Sign-in for the deployed page: Cognito's hosted UI with the OAuth 2.0 authorization-code flow and PKCE
// (RFC 7636). No SDK: the browser's own crypto and fetch. Tokens live in sessionStorage (gone with the tab).

const TOKEN_KEY = "review.tokens";
const FLOW_KEY = "review.pkce";

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

function redirectUri() {
  return window.location.origin + window.location.pathname;
}

async function startSignIn(cognito) {
  const verifier = randomString(48);
  const state = randomString(16);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: cognito.clientId,
    redirect_uri: redirectUri(),
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
  const response = await fetch(`${cognito.domain}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      client_id: cognito.clientId,
      code: params.get("code"),
      redirect_uri: redirectUri(),
      code_verifier: flow.verifier,
    }),
  });
  if (!response.ok) throw new Error(`sign-in failed: ${response.status} ${await response.text()}`);
  const tokens = await response.json();
  const expiresAt = Date.now() + (tokens.expires_in - 60) * 1000;
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ access: tokens.access_token, expiresAt }));
  window.history.replaceState(null, "", redirectUri());
}

// The access token for the API; signs in first when there is none (navigates away, never resolves then).
export async function accessToken(cognito) {
  const params = new URLSearchParams(window.location.search);
  if (params.has("error")) throw new Error(`sign-in refused: ${params.get("error_description") || params.get("error")}`);
  if (params.has("code")) await finishSignIn(cognito, params);
  const stored = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
  if (stored && stored.expiresAt > Date.now()) return stored.access;
  await startSignIn(cognito);
  return new Promise(() => {});
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export function signOut(cognito) {
  forgetToken();
  const query = new URLSearchParams({ client_id: cognito.clientId, logout_uri: redirectUri() });
  window.location.assign(`${cognito.domain}/logout?${query}`);
}
