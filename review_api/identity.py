"""The signed-in reviewer, from the claims API Gateway's JWT authorizer passed on, and what their group allows.

The page sends the Cognito **ID token**, not the access token. Why (AWS's documentation, read for this):
- the access token carries `sub`, `username` (a generated UUID when users sign in by e-mail), `cognito:groups`,
  `scope`, `client_id`, `token_use: access`, and no `email` claim; the ID token carries `email`, `aud` (the app
  client id), `cognito:username`, `cognito:groups` and `token_use: id`
  (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html,
  .../amazon-cognito-user-pools-using-the-id-token.html);
- an HTTP API JWT authorizer accepts either: it checks `aud`, or `client_id` when `aud` is absent, against its
  audience (the app client id here), and checks scopes only when a route requires some (none do)
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html, which names ID tokens
  for API authorization as a supported choice).
So the e-mail reaches the API from a token API Gateway verified, with no Cognito call per request and no extra
permission. A request with an access token is refused with a clear 401 (it would be recorded as a UUID).

API Gateway passes every claim as a string: `"cognito:groups": "[reviewers leads]"` (bracketed, space-separated;
aws-solutions-library-samples/guidance-for-claude-code-with-amazon-bedrock#802, floci-io/floci#2011), `exp` as
`"1796122800"`. `groups_of` reads that form and a JSON list alike.

Groups (created by stacks/review/page.py): `reviewers` decide; `leads` also override another reviewer's decision
and export. A signed-in user in neither group is refused (403) on every route but /api/me.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from review_api.inputs import Forbidden, Unauthorized

REVIEWERS_GROUP = "reviewers"
LEADS_GROUP = "leads"
REVIEW_GROUPS = (REVIEWERS_GROUP, LEADS_GROUP)


def groups_of(value: Any) -> frozenset[str]:
    """`cognito:groups` as API Gateway passes it ("[a b]"), as a JSON list, or as one name."""
    if value is None:
        return frozenset()
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(name) for name in value)
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return frozenset(name for name in text.replace(",", " ").split() if name)


@dataclass(frozen=True)
class Reviewer:
    """Who decides: `name` is the e-mail shown and recorded, `sub` the stable Cognito user id."""

    sub: str
    name: str
    groups: frozenset[str] = field(default_factory=lambda: frozenset({REVIEWERS_GROUP}))

    @property
    def is_lead(self) -> bool:
        return LEADS_GROUP in self.groups

    @property
    def may_review(self) -> bool:
        return bool(self.groups & set(REVIEW_GROUPS))

    def require_reviewer(self) -> None:
        if not self.may_review:
            raise Forbidden(
                f"{self.name} is in neither the {REVIEWERS_GROUP} nor the {LEADS_GROUP} group: an administrator "
                f"adds them (aws cognito-idp admin-add-user-to-group --group-name {REVIEWERS_GROUP} ...), then "
                "they sign in again"
            )

    def require_lead(self, action: str) -> None:
        self.require_reviewer()
        if not self.is_lead:
            raise Forbidden(f"only the {LEADS_GROUP} group may {action}; {self.name} is not in it")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sub": self.sub, "groups": sorted(self.groups), "lead": self.is_lead}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any] | None) -> Reviewer:
        """The reviewer of an ID token's claims; Unauthorized when there are none or they are not an ID token's."""
        if not claims or not isinstance(claims, Mapping) or not claims.get("sub"):
            raise Unauthorized(
                "no authorizer claims in the request: the API only answers requests signed in through Cognito "
                "(the JWT authorizer)"
            )
        if claims.get("token_use") != "id":
            raise Unauthorized(
                f"the API takes the Cognito ID token (token_use id), got token_use {claims.get('token_use')!r}: "
                "an access token names no e-mail, so decisions could not say who made them"
            )
        email = claims.get("email")
        if not email:
            raise Unauthorized("the ID token carries no email claim: the app client must request the email scope")
        return cls(sub=str(claims["sub"]), name=str(email), groups=groups_of(claims.get("cognito:groups")))


__all__ = ["LEADS_GROUP", "REVIEWERS_GROUP", "REVIEW_GROUPS", "Reviewer", "groups_of"]
