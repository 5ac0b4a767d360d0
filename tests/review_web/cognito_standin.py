"""A local stand-in for Cognito's managed login and token endpoint, and for API Gateway's JWT authorizer, so the
page's sign-in (review_web/auth.js) runs in a real browser without AWS.

What it holds the page to, as Cognito does (https://docs.aws.amazon.com/cognito/latest/developerguide/
authorization-endpoint.html and token-endpoint.html):
- /oauth2/authorize accepts only a redirect_uri that is exactly one of the client's callback URLs; any other is
  refused with a redirect to /error?error=redirect_mismatch (Cognito's answer);
- /oauth2/token `authorization_code` needs the same redirect_uri and the PKCE verifier of the challenge, and
  returns id_token, access_token, refresh_token, expires_in; `refresh_token` returns new id and access tokens (no
  new refresh token), or 400 invalid_grant once the refresh token has expired.
Tokens carry the claim sets of tests/review_api/review_testkit.py, signed with HS256 (a stand-in; Cognito signs
RS256). `authorize(headers)` is the API side: the Bearer token's signature, `exp`, `aud` and `iss` checked, claims
passed on as API Gateway does (review_api.local.gateway_claims), None (401) otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from review_api.local import gateway_claims
from tests.review_api.review_testkit import CLIENT_ID, ISSUER, id_token_claims

_KEY = secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: Mapping[str, Any]) -> str:
    head = _b64(json.dumps({"alg": "HS256", "kid": "standin"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def verify(token: str) -> dict[str, Any] | None:
    try:
        head, body, signature = token.split(".")
    except ValueError:
        return None
    expected = hmac.new(_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(signature)):
        return None
    return json.loads(_unb64(body))


@dataclass
class StandIn:
    url: str = ""
    callback_urls: list[str] = field(default_factory=list)
    email: str = "ana@example.com"
    sub: str = "7d1c4e0a-3b2f-4f6e-9a51-0c2d8e6f1a11"
    groups: list[str] = field(default_factory=lambda: ["reviewers"])
    lifetime: int = 3600  # seconds an ID/access token lives (expires_in)
    refresh_expired: bool = False
    authorize_calls: list[str] = field(default_factory=list)  # redirect_uri of each /oauth2/authorize
    grants: list[str] = field(default_factory=list)  # grant_type of each successful token request
    used: list[str] = field(default_factory=list)  # jti of each ID token the API accepted
    revoked: set[str] = field(default_factory=set)  # jti the API refuses (as after a RevokeToken)
    _codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, redirect_uri)
    _refresh_tokens: set[str] = field(default_factory=set)

    def issue(self, *, with_refresh: bool) -> dict[str, Any]:
        now = int(time.time())
        claims = id_token_claims(self.email, self.sub, self.groups, issued_at=now, lifetime=self.lifetime)
        claims["jti"] = secrets.token_hex(8)
        tokens: dict[str, Any] = {
            "id_token": sign(claims),
            "access_token": sign({**claims, "token_use": "access", "jti": secrets.token_hex(8)}),
            "expires_in": self.lifetime,
            "token_type": "Bearer",
        }
        if with_refresh:
            tokens["refresh_token"] = secrets.token_urlsafe(24)
            self._refresh_tokens.add(tokens["refresh_token"])
        return tokens

    def authorize(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """API Gateway's JWT authorizer for the local API: None is its 401."""
        value = headers.get("authorization", "")
        claims = verify(value.removeprefix("Bearer ").strip()) if value.startswith("Bearer ") else None
        if (
            claims is None
            or claims.get("exp", 0) <= time.time()
            or claims.get("aud", claims.get("client_id")) != CLIENT_ID
            or claims.get("iss") != ISSUER
            or claims.get("jti") in self.revoked
        ):
            return None
        self.used.append(str(claims["jti"]))
        return gateway_claims(claims)

    def jti(self, token: str) -> str:
        claims = verify(token)
        assert claims is not None
        return str(claims["jti"])


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: bytes, kind: str = "application/json", location: str | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")  # the token endpoint answers CORS requests
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Access-Control-Allow-Methods", "POST")
            self.end_headers()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(parts.query).items()}
            if parts.path == "/oauth2/authorize":
                redirect = query.get("redirect_uri", "")
                standin.authorize_calls.append(redirect)
                if query.get("client_id") != CLIENT_ID or redirect not in standin.callback_urls:
                    error = urlencode({"error": "redirect_mismatch", "client_id": query.get("client_id", "")})
                    return self._send(302, b"", location=f"{standin.url}/error?{error}")
                code = secrets.token_urlsafe(16)
                standin._codes[code] = (query.get("code_challenge", ""), redirect)
                return self._send(
                    302, b"", location=f"{redirect}?{urlencode({'code': code, 'state': query['state']})}"
                )
            if parts.path == "/error":
                return self._send(400, f"<h1>{query.get('error')}</h1>".encode(), "text/html")
            self._send(404, b"{}")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {name: values[0] for name, values in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/oauth2/token" or form.get("client_id") != CLIENT_ID:
                return self._send(400, b'{"error":"invalid_client"}')
            if form.get("grant_type") == "authorization_code":
                challenge, redirect = standin._codes.pop(form.get("code", ""), ("", ""))
                verifier = form.get("code_verifier", "")
                if (
                    not challenge
                    or redirect != form.get("redirect_uri")
                    or _b64(hashlib.sha256(verifier.encode()).digest()) != challenge
                ):
                    return self._send(400, b'{"error":"invalid_grant"}')
                standin.grants.append("authorization_code")
                return self._send(200, json.dumps(standin.issue(with_refresh=True)).encode())
            if form.get("grant_type") == "refresh_token":
                if standin.refresh_expired or form.get("refresh_token") not in standin._refresh_tokens:
                    return self._send(400, b'{"error":"invalid_grant"}')
                standin.grants.append("refresh_token")
                return self._send(200, json.dumps(standin.issue(with_refresh=False)).encode())
            self._send(400, b'{"error":"unsupported_grant_type"}')

    return Handler


@contextmanager
def cognito_standin(**settings: Any) -> Iterator[StandIn]:
    standin = StandIn(**settings)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
