"""Block time is the only clock: exact grant expiry and risk-counter windows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contracts_kit import Clock, Net

from sharechain.contracts import derive_id, queries

HOUR = 3_600_000


def test_grant_expires_exactly_at_its_block_time(net: Net, clock: Clock) -> None:
    ds = net.register()
    gid = net.granted(ds)
    grant = net.state(f"grant/{gid}")
    assert grant["expires_at"] == grant["issued_at"] + HOUR
    clock.at_ms(grant["expires_at"] - 1)  # one millisecond before expiry
    assert net.release(gid).code == "valid"
    assert net.store.head().timestamp == grant["expires_at"] - 1  # type: ignore[union-attr]
    assert queries.grant(net.store, gid).status == "active"
    clock.at_ms(grant["expires_at"])  # the expiry instant itself
    r = net.release(gid)
    assert net.store.head().timestamp == grant["expires_at"]  # type: ignore[union-attr]
    assert r.code == "expired"
    assert str(grant["expires_at"]) in r.reason
    assert queries.grant(net.store, gid).status == "expired"
    # a grantee cannot read under an expired grant either
    assert net.send("hospital-b", "grant.read", {"grant": gid, "digest": b"\0" * 32}).code == (
        "expired"
    )


def test_max_uses_counts_key_releases_and_shares_of_one_session_once(net: Net) -> None:
    ds = net.register(policy={"max_uses": 2})
    gid = net.granted(ds)
    share = {"to": "hospital-b", "epoch": 1, "wrapped_key_digest": b"\1" * 32, "session": "s1"}
    net.ok("hospital-a", "grant.key-release", {"grant": gid, **share})
    net.ok("hospital-a", "grant.key-release", {"grant": gid, **share})  # second share
    assert net.state(f"grant/{gid}")["uses"] == 1
    assert net.release(gid).code == "valid"
    r = net.release(gid)
    assert r.code == "used_up" and "2" in r.reason
    assert queries.grant(net.store, gid).status == "used_up"


def test_revoked_grant_refuses_key_release(net: Net) -> None:
    gid = net.granted(net.register())
    net.ok("regulator", "grant.revoke", {"grant": gid, "reason": "audit finding"})
    assert net.release(gid).code == "revoked"
    assert net.send("hospital-a", "grant.revoke", {"grant": gid}).code == "bad_state"


def _requests(net: Net, ds: str, n: int, org: str = "clinic-c") -> list[str]:
    return [derive_id("request", net.request(ds, org).tx_id) for _ in range(n)]


def test_request_counter_alert_suspends_grants_until_cleared(
    make_net: Callable[[Mapping[str, Any]], Net], clock: Clock
) -> None:
    net = make_net({"risk": {"max_requests": 3, "window": HOUR}})
    ds = net.register()
    gid = net.granted(ds, "clinic-c")  # request 1 of clinic-c in this window
    clock.t += 1
    assert net.release(gid, to="clinic-c").code == "valid"
    _requests(net, ds, 2)  # requests 2 and 3: at the threshold, no alert
    assert queries.alerts(net.store) == []
    crossing = net.request(ds, "clinic-c")  # request 4 crosses it; still accepted
    (alert,) = queries.alerts(net.store)
    assert alert.id == derive_id("alert", crossing.tx_id)
    assert (alert.org, alert.kind, alert.count, alert.threshold) == ("clinic-c", "requests", 4, 3)
    assert alert.suspends
    r = net.release(gid, to="clinic-c")
    assert r.code == "suspended"
    assert queries.grant(net.store, gid).status == "suspended"
    assert net.send("hospital-a", "alerts.clear", {"alert": alert.id}).code == "denied"
    net.ok("regulator", "alerts.clear", {"alert": alert.id, "note": "known batch job"})
    assert queries.alerts(net.store) == []
    assert net.release(gid, to="clinic-c").code == "valid"
    assert net.send("regulator", "alerts.clear", {"alert": alert.id}).code == "bad_state"


def test_counters_restart_in_each_window(
    make_net: Callable[[Mapping[str, Any]], Net], clock: Clock
) -> None:
    net = make_net({"risk": {"max_requests": 2, "window": HOUR}})
    ds = net.register()
    start = clock.ms - clock.ms % HOUR
    clock.at_ms(start + HOUR - 10)  # near the end of a window
    _requests(net, ds, 2)
    clock.at_ms(start + HOUR)  # the next window begins exactly here
    _requests(net, ds, 2)
    assert queries.alerts(net.store) == []
    _requests(net, ds, 1)
    (alert,) = queries.alerts(net.store)
    assert alert.window_start == start + HOUR


def test_key_release_counter_alerts_without_suspending_when_configured(
    make_net: Callable[[Mapping[str, Any]], Net],
) -> None:
    net = make_net({"risk": {"max_key_releases": 1, "suspend_on_alert": False}})
    gid = net.granted(net.register())
    assert net.release(gid).code == "valid"
    assert net.release(gid).code == "valid"  # crosses: alert, no suspension
    (alert,) = queries.alerts(net.store)
    assert (alert.kind, alert.org, alert.suspends) == ("key_releases", "hospital-b", False)
    assert net.release(gid).code == "valid"
