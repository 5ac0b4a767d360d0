// The review API from the page: JSON over fetch, the ID token as a Bearer token in cloud mode (renewed with the
// refresh token, auth.js), errors as ApiError with the API's status and message.
import { idToken } from "./auth.js";

let settings = null;
let token = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function configureApi(config) {
  settings = config;
  if (config.mode === "cloud") token = await idToken(config.cognito);
}

async function send(path, method, body, keepalive) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (settings.mode === "cloud") {
    token = await idToken(settings.cognito); // renewed in the background once it is about to expire
    headers.Authorization = `Bearer ${token}`;
  }
  return fetch(`${settings.apiBase}${path}`, {
    method,
    headers,
    keepalive,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

export async function api(path, { method = "GET", body, keepalive = false } = {}) {
  let response = await send(path, method, body, keepalive);
  if (response.status === 401 && settings.mode === "cloud") {
    // Refused by the JWT authorizer (revoked, clock skew): renew once and try again.
    token = await idToken(settings.cognito, { force: true });
    response = await send(path, method, body, keepalive);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
