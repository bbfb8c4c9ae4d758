"""Attack: a member registers a policy whose auto-approval rule is a bomb.

Every node evaluates the rule for each access request inside a block, so an
unbounded rule would stall, exhaust or crash every node of the consortium at
once. The rule must be refused when the policy is registered, with an error
naming the limit it breaks, and nothing in it may reach the evaluator's own
(recursive) parser first. The bombs below are real: the ones marked as
crashing kill a Python process outright when given to the evaluator today.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from security_kit import Net, consortium

from sharechain.contracts import rules
from sharechain.contracts.policies import (
    RuleCrashError,
    RuleError,
    _guarded,
    auto_approved,
    policy_from_mapping,
)

_TEN = ",".join(str(i) for i in range(10))
_EIGHT_A = " + ".join(["a"] * 8)

BOMBS = {
    # the evaluator's parser recurses per level: 20,000 terms overflow its stack
    "member chain (segfault)": ("a" + ".b" * 20_000, "length"),
    "long sum (segfault)": ("1" + "+1" * 20_000, "length"),
    "parentheses (panic)": ("(" * 100_000 + "1" + ")" * 100_000, "length"),
    "parentheses": ("(" * 400 + "true" + ")" * 400, "depth"),
    "negations": ("!" * 300 + "true", "depth"),
    "left-deep sum": ("1" + "+1" * 300, "depth"),
    "wide tree": ("[" + ",".join(["[" + ",".join(["1"] * 8) + "]"] * 40) + "]", "size"),
    "nested comprehensions": (
        f"[{_TEN}].map(a, [{_TEN}].map(b, [{_TEN}].map(c, 1))).size() > 0",
        "macro nesting",
    ),
    "chained string doubling": (
        '["a"]' + f".map(a, {_EIGHT_A})" * 7 + "[0].size() > 0",
        "evaluation cost",
    ),
    "string growth over the request": (
        "request.fields.map(f, request.justification + f).size() > 0",
        "evaluation cost",
    ),
    "quadratic pairs": (
        "request.fields.all(f, request.fields.all(g, f + g != request.justification))",
        "evaluation cost",
    ),
    "iterating the request's keys": (
        "request.map(k, request.fields.all(f, f + request.justification != k)).size() > 0",
        "evaluation cost",
    ),
    "a pattern the requester writes": (
        "request.purpose.matches(request.justification)",
        "pattern",
    ),
    "huge text literal": ('"' + "x" * 600 + '" == request.purpose', "literal size"),
    "huge list literal": ("request.purpose in [" + ",".join(['"a"'] * 65) + "]", "literal size"),
    "a clock": ("now > 0", "names"),
    "a host function": ('timestamp("2020-01-01T00:00:00Z") > 0', "functions"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_is_refused_naming_the_limit(name: str) -> None:
    rule, limit = BOMBS[name]
    with pytest.raises(RuleError) as caught:
        policy_from_mapping({"auto_approve": [rule]})
    assert caught.value.limit == limit
    assert f"limit on {limit}" in str(caught.value) or limit in ("names", "functions")


def test_too_many_rules_and_too_much_cost_together_are_refused() -> None:
    with pytest.raises(RuleError, match="at most 16") as many:
        policy_from_mapping({"auto_approve": ['request.purpose == "a"'] * 17})
    assert many.value.limit == "rules"
    heavy = "request.fields.all(f, dataset.tags.exists(t, t == f))"
    assert rules.MAX_COST // 4 < rules.check_rule(heavy) <= rules.MAX_COST
    with pytest.raises(RuleError, match="together") as costly:
        policy_from_mapping({"auto_approve": [heavy] * 4})
    assert costly.value.limit == "evaluation cost"


def test_the_crashing_bombs_leave_the_process_alive() -> None:
    # Run where a crash cannot take the test run with it: today these kill
    # the interpreter (SIGSEGV, or a Rust panic unwinding as BaseException).
    crashing = [rule for name, (rule, _) in BOMBS.items() if "(" in name]
    script = (
        "import json, sys\n"
        "from sharechain.contracts.policies import RuleError, policy_from_mapping\n"
        "out = []\n"
        "for rule in json.load(sys.stdin):\n"
        "    try:\n"
        "        policy_from_mapping({'auto_approve': [rule]})\n"
        "        out.append('accepted')\n"
        "    except RuleError as exc:\n"
        "        out.append(exc.limit)\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(crashing),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == ["length"] * len(crashing)


def test_a_panic_of_the_real_evaluator_becomes_a_refusal() -> None:
    import cel

    # Past the limits, the evaluator's parser panics on this (a BaseException).
    with pytest.raises(RuleCrashError, match="crashed the CEL evaluator") as caught:
        _guarded("bomb", "compiling", cel.compile, "(" * 100_000 + "1" + ")" * 100_000)
    assert caught.value.limit == "crash"
    with pytest.raises(KeyboardInterrupt):
        _guarded("x", "evaluating", _interrupt)


def _interrupt() -> None:
    raise KeyboardInterrupt


_LARGEST = {
    "request": {
        "purpose": "p" * 256,
        "duration": 1,
        "fields": [f"f{i:0255d}" for i in range(256)],
        "justification": "j" * 4096,
    },
    "requester": {"org": "o" * 64, "roles": ["member", "admin", "supervisor"], "name": "n" * 4096},
    "dataset": {
        "id": "d" * 64,
        "owner": "o" * 64,
        "tags": [f"t{i:0255d}" for i in range(32)],
        "classification": "secret",
        "title": "t" * 256,
    },
}


@pytest.mark.parametrize(
    "rule",
    [
        "request.fields.all(f, dataset.tags.exists(t, t != f))",
        '["a"]' + f".map(a, {_EIGHT_A})" * 5 + "[0].size() > 0",
        "request.fields.filter(f, f.size() > 1).size() > 0",
        "request.fields.map(f, f.size()).size() > 0",
    ],
)
def test_what_the_limits_admit_evaluates_quickly_on_the_largest_request(rule: str) -> None:
    # The estimate is an upper bound: a rule just under the limit, on the largest
    # values a request can carry, finishes far below a block's time budget.
    policy = policy_from_mapping({"auto_approve": [rule]})
    started = time.perf_counter()
    assert auto_approved(policy, _LARGEST) == rule
    assert time.perf_counter() - started < 0.5


def test_registering_or_changing_to_a_bomb_policy_is_refused_on_the_chain(tmp_path: Path) -> None:
    with consortium(tmp_path) as net:
        before = net.store.head()
        rule, _ = BOMBS["string growth over the request"]
        r = net.send("hospital-a", "dataset.register", _dataset(net, {"auto_approve": [rule]}))
        assert r.code == "bad_expression"
        assert "limit on evaluation cost" in r.reason
        ds = net.register("hospital-a")
        deep, _ = BOMBS["parentheses"]
        bomb = {"dataset": ds, "policy": {"auto_approve": [deep]}}
        r = net.send("hospital-a", "dataset.policy", bomb)
        assert r.code == "bad_expression" and "limit on depth" in r.reason
        assert net.state(f"dataset/{ds}")["policy"]["auto_approve"] == []
        assert before is not None and net.store.head() is not None


def _dataset(net: Net, policy: dict[str, object]) -> dict[str, object]:
    from security_kit import digest

    return {
        "title": "t",
        "plaintext_digest": digest("p-bomb"),
        "ciphertext_digest": digest("c-bomb"),
        "size": 1,
        "policy": policy,
    }
