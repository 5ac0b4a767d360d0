"""Who decided and what their group allows: tokens shaped as Cognito issues them, passed on as API Gateway does."""

from __future__ import annotations

import pytest

from review_api.identity import Reviewer, groups_of
from review_api.inputs import Forbidden, Unauthorized
from tests.review_api.review_testkit import (
    ACCESS_CLAIMS,
    ANA_SUB,
    BUCKET,
    CLAIMS,
    LEAD_CLAIMS,
    NO_GROUP_CLAIMS,
    Account,
    history_of,
    read_item,
    seed_photo,
)


def _shown(account: Account) -> dict:
    status, page = account.call("GET", "/api/photos")
    assert status == 200, page
    return page["photos"][0]


def test_the_decision_names_the_reviewers_email_and_sub_from_the_id_token(account: Account) -> None:
    # Given a photo and ana signed in by e-mail (her Cognito username is a generated UUID)
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)

    # When she confirms it with the ID token the page sends
    status, view = account.call(
        "POST", f"/api/photos/{shown['id']}/decision", body={"decision": "confirm", "token": shown["token"]}
    )

    # Then the item, the answer and the history name her e-mail, and her stable sub beside it, never the UUID alone
    assert status == 200 and view["reviewed_by"] == "ana@example.com"
    item = read_item(account.dynamodb, f"s3://{BUCKET}/uploads/h1/a.jpg")
    assert item is not None and (item["reviewed_by"], item["reviewed_by_sub"]) == ("ana@example.com", ANA_SUB)
    [entry] = history_of(account.dynamodb, f"s3://{BUCKET}/uploads/h1/a.jpg")
    assert (entry["by"], entry["by_sub"], entry["action"]) == ("ana@example.com", ANA_SUB, "decide")
    # And /api/me says who is signed in and what they may do
    status, me = account.call("GET", "/api/me")
    assert status == 200 and me["name"] == "ana@example.com" and me["groups"] == ["reviewers"]
    assert me["lead"] is False and me["may_review"] is True


def test_an_access_token_is_refused_with_a_reason_instead_of_recording_a_uuid(account: Account) -> None:
    # Given the claims of an access token (what the page sent before): sub, username = UUID, no email
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    assert "email" not in ACCESS_CLAIMS and ACCESS_CLAIMS["username"] == ANA_SUB
    status, body = account.call("GET", "/api/photos", claims=ACCESS_CLAIMS)
    assert status == 401 and "ID token" in body["message"] and "token_use 'access'" in body["message"]


def test_groups_arrive_as_api_gateway_passes_them_and_as_lists() -> None:
    # API Gateway's HTTP API JWT authorizer flattens array claims to "[a b]"
    # (aws-solutions-library-samples/guidance-for-claude-code-with-amazon-bedrock#802).
    assert LEAD_CLAIMS["cognito:groups"] == "[reviewers leads]"
    assert groups_of("[reviewers leads]") == {"reviewers", "leads"}
    assert (
        groups_of(["leads"]) == {"leads"} and groups_of("reviewers") == {"reviewers"} and groups_of(None) == set()
    )
    assert Reviewer.from_claims(LEAD_CLAIMS).is_lead and not Reviewer.from_claims(CLAIMS).is_lead
    with pytest.raises(Unauthorized):
        Reviewer.from_claims({k: v for k, v in CLAIMS.items() if k != "email"})


def test_a_user_in_no_review_group_may_sign_in_but_not_review(account: Account) -> None:
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    # /api/me answers (the page says what is missing), everything else is 403 naming the groups
    status, me = account.call("GET", "/api/me", claims=NO_GROUP_CLAIMS)
    assert status == 200 and me["may_review"] is False
    for method, path, body in [
        ("GET", "/api/photos", None),
        ("POST", "/api/claims", {}),
        ("POST", f"/api/photos/{shown['id']}/decision", {"decision": "confirm", "token": shown["token"]}),
    ]:
        status, answer = account.call(method, path, body=body, claims=NO_GROUP_CLAIMS)
        assert status == 403 and "neither the reviewers nor the leads group" in answer["message"], path
    assert "review_decision" not in read_item(account.dynamodb, shown["image_uri"])  # type: ignore[operator]


def test_only_leads_export(account: Account) -> None:
    # Given a decided photo
    seed_photo(account.s3, account.dynamodb, "uploads/h1/a.jpg")
    shown = _shown(account)
    account.call(
        "POST", f"/api/photos/{shown['id']}/decision", body={"decision": "reject", "token": shown["token"]}
    )
    # Then a reviewer may not export it, a lead may
    status, refused = account.call("GET", "/api/export")
    assert status == 403 and "only the leads group may export" in refused["message"]
    status, page = account.call("GET", "/api/export", claims=LEAD_CLAIMS)
    assert status == 200 and page["cursor"] is None
    assert [(row["decision"], row["label"], row["status_before_review"]) for row in page["rows"]] == [
        ("reject", None, "NEEDS_REVIEW")
    ]


def test_the_lead_role_is_checked_in_the_service_too() -> None:
    reviewer = Reviewer(sub="s", name="x@example.com", groups=frozenset({"reviewers"}))
    with pytest.raises(Forbidden):
        reviewer.require_lead("override another reviewer's decision")
    Reviewer(sub="s", name="x@example.com", groups=frozenset({"leads"})).require_lead("export")
