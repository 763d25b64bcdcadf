"""A malformed query or path value on a web page answers a page people read (422, in their
language, naming the parameter); the API keeps answering problem+json."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import SignedIn

BAD_ADDRESSES = [
    ("/?severity=bogus", "severity", "is not one of the allowed values"),
    ("/?tlp=PURPLE", "tlp", "is not one of the allowed values"),
    ("/?owner=garbage", "owner", "is not a valid id"),
    ("/?overdue=perhaps", "overdue", "must be true or false"),
    ("/?ministry=%3Cscript%3E", "ministry", "is not one of the allowed values"),
    ("/?mineral=" + "x" * 40, "mineral", "is not one of the allowed values"),
    ("/notifications?unread=maybe", "unread", "must be true or false"),
    ("/vulnerabilities?by=nonsense", "by", "is not one of the allowed values"),
    ("/admin/users/not-a-uuid", "user_id", "is not a valid id"),
    ("/admin/policies/SEV9", "severity", "is not one of the allowed values"),
    ("/admin/deliveries/12", "delivery_id", "is not a valid id"),
]
JAPANESE = {
    "is not one of the allowed values": "選択できない値です",
    "is not a valid id": "有効な ID ではありません",
    "must be true or false": "true か false にしてください",
}


def bad_values(html: str) -> list[tuple[str, str]]:
    listing = re.search(r'<ul class="error" role="alert" id="bad-values">(.*?)</ul>', html, re.S)
    assert listing, html[:3000]
    return re.findall(r"<li><code>([^<]+)</code>: ([^<]+)</li>", listing.group(1))


@pytest.mark.parametrize(("address", "name", "reason"), BAD_ADDRESSES)
async def test_a_malformed_parameter_answers_a_readable_page(
    signed_in: SignedIn, address: str, name: str, reason: str
):
    admin = await signed_in("admin", "DOE")
    response = await admin.get(address)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in response.headers
    assert bad_values(response.text) == [(name, reason)]
    assert "<script>" not in response.text  # the value itself is never echoed unescaped
    # In Japanese for a Japanese reader.
    await admin.post("/preferences/language", {"language": "ja", "next": "/admin/users"})
    ja = await admin.get(address)
    assert ja.status_code == 422 and '<html lang="ja">' in ja.text
    assert bad_values(ja.text) == [(name, JAPANESE[reason])]
    assert "使用できない値があります" in ja.text


async def test_several_bad_filters_are_named_together_and_good_ones_still_work(
    signed_in: SignedIn,
):
    lead = await signed_in("lead", "METI")
    response = await lead.get("/?severity=SEV1&severity=SEV7&tlp=GREEN&owner=x")
    assert response.status_code == 422
    assert [n for n, _ in bad_values(response.text)] == ["severity", "owner"]
    # What the filter form itself sends ("any" is empty) is accepted.
    assert (await lead.get("/?mineral=&severity=&ministry=&tlp=&overdue=1")).status_code == 200
    assert (
        await lead.get("/?mineral=graphite&severity=SEV2&tlp=AMBER%2BSTRICT")
    ).status_code == 200


async def test_the_api_keeps_problem_json(signed_in: SignedIn):
    lead = await signed_in("lead", "DOE")
    response = await lead.client.get("/api/v1/incidents?severity=bogus", headers=lead.actor.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"].startswith("severity")
