"""The console's gate: nothing but the login page without a session, the headers, the cookies,
the login throttle, session expiry."""

from __future__ import annotations

import re

import pytest
from web_kit import PASSWORD, Clock, csrf_of, login
from web_testclient import TestClient

from sharechain.web import Console
from sharechain.web.guard import CSP

PAGES = (
    "/ui",
    "/ui/",
    "/ui/blocks",
    "/ui/blocks/0",
    "/ui/datasets",
    "/ui/inbox",
    "/ui/privacy",
    "/ui/checkpoints",
    "/ui/org",
)
ACTIONS = ("/ui/requests/ab/approve", "/ui/grants/ab/revoke", "/ui/logout", "/ui/alerts/ab/clear")


def test_without_a_session_only_the_login_page_is_served(client: TestClient) -> None:
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=/ui")
    for path in ACTIONS:
        assert client.post(path, follow_redirects=False).status_code == 401
    r = client.get("/ui/inbox", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/ui/login")
    assert client.get("/ui/login").status_code == 200
    assert client.get("/ui/static/htmx.min.js").status_code == 200
    # A forged cookie is no session either.
    client.cookies.set("sc_session", "0" * 64)
    assert client.get("/ui/inbox", follow_redirects=False).status_code == 303


def test_every_answer_carries_the_policy_and_no_page_has_inline_code(
    client: TestClient, chain: object
) -> None:
    assert login(client, "adam").status_code == 303
    for path in (*PAGES, "/ui/login", "/ui/static/console.css", "/ui/nowhere"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        if r.headers["content-type"].startswith("text/html"):
            assert r.headers["cache-control"] == "no-store"
            # Scripts only from files, no style attributes or elements, no event handlers.
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), path
            assert not re.search(r"<style|\sstyle=|\son[a-z]+=", r.text), path
    assert CSP.startswith("default-src 'self';") and "'unsafe-inline'" not in CSP
    # The node's own API is not the console's business.
    assert "content-security-policy" not in client.get("/v1/health").headers


def test_session_cookie_flags(client: TestClient) -> None:
    r = login(client, "vera")
    cookie = r.headers["set-cookie"]
    assert "sc_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/ui" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_under_tls(console: tuple[Console, TestClient]) -> None:
    app = console[1].app
    with TestClient(app, base_url="https://testserver") as tls:
        cookie = login(tls, "vera").headers["set-cookie"]
    assert "Secure" in cookie


def test_login_needs_its_form_token(client: TestClient) -> None:
    client.get("/ui/login")
    r = client.post("/ui/login", data={"name": "vera", "password": PASSWORD, "csrf": "00"})
    assert r.status_code == 403 and "token" in r.text
    assert "sc_session" not in client.cookies


def test_wrong_passwords_are_throttled(client: TestClient, clock: Clock) -> None:
    for _ in range(5):
        r = login(client, "anna", "not the password")
        assert r.status_code == 401 and "wrong name or password" in r.text
    r = login(client, "anna")  # the right password, but too soon
    assert r.status_code == 429 and "too many failed logins" in r.text
    assert 0 < int(r.headers["retry-after"]) <= 301
    assert login(client, "vera").status_code == 429  # the same address
    clock.t += 301
    assert login(client, "anna").status_code == 303


def test_sessions_expire(client: TestClient, clock: Clock) -> None:
    assert login(client, "vera").status_code == 303
    clock.t += 29 * 60
    assert client.get("/ui/inbox").status_code == 200  # a request restarts the idle clock
    clock.t += 31 * 60
    r = client.get("/ui/inbox", follow_redirects=False)
    assert r.status_code == 303 and "/ui/login" in r.headers["location"]


def test_login_goes_only_to_console_paths(client: TestClient) -> None:
    for target, expected in (("//evil.example/x", "/ui/"), ("/ui/inbox", "/ui/inbox")):
        page = client.get("/ui/login")
        r = client.post(
            "/ui/login",
            data={"name": "vera", "password": PASSWORD, "csrf": csrf_of(page.text), "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == expected


@pytest.mark.parametrize("with_token", [False, True])
def test_logout_needs_the_csrf_token(client: TestClient, with_token: bool) -> None:
    login(client, "vera")
    token = csrf_of(client.get("/ui/").text)
    data = {"csrf": token} if with_token else {}
    r = client.post("/ui/logout", data=data, follow_redirects=False)
    assert r.status_code == (303 if with_token else 403)
    after = client.get("/ui/", follow_redirects=False).status_code
    assert after == (303 if with_token else 200)


def test_removed_operator_is_out_and_a_new_role_applies_at_once(
    console: tuple[Console, TestClient],
) -> None:
    con, client = console
    login(client, "anna")
    assert "Log out" in client.get("/ui/").text and "(approver)" in client.get("/ui/").text
    con.accounts.set_role("anna", "viewer")
    assert "(viewer)" in client.get("/ui/").text
    con.accounts.remove("anna")
    assert client.get("/ui/", follow_redirects=False).status_code == 303
