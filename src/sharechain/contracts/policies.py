"""Sharing policies: who must approve access to a dataset, and on what terms.

A policy travels with its dataset (set at registration, changed by the owner
with `dataset.policy`). It says:

- who approves: by default the owner *and* one supervisor (joint approval);
  or any `k` of a named set of organisations;
- auto-approval rules: CEL expressions over `request`, `requester` and
  `dataset`; when one is true the grant is issued with the request, no vote;
- allowed purposes, the maximum duration of a grant and its maximum number of
  key releases (uses);
- the masking profile (by digest) whose masked release a grantee gets, by the
  dataset's classification, and the privacy budget (epsilon) per grantee.

Policies are plain maps on the chain and in YAML files; `policy_from_mapping`
is the one parser and gives a clear error for anything wrong. CEL rules are
measured against static limits (`sharechain.contracts.rules`: length, syntax
size and depth, literal sizes, comprehension nesting, estimated evaluation
cost) and compiled when the policy is parsed, so a bad or unbounded rule is
refused at registration with a message naming the limit. Evaluation sees only
the variables passed in (no clock, no I/O), so every peer gets the same answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sharechain.contracts.rules import MAX_COST, MAX_RULES, RuleLimitError, check_rule

__all__ = [
    "CLASSIFICATIONS",
    "JOINT",
    "K_OF_N",
    "Approval",
    "Policy",
    "PolicyError",
    "RuleCrashError",
    "RuleError",
    "auto_approved",
    "compile_rule",
    "parse_duration",
    "parse_epsilon",
    "policy_from_mapping",
    "policy_to_value",
    "rule_cost",
]

CLASSIFICATIONS = ("public", "internal", "confidential", "secret")
JOINT = "owner+supervisor"
K_OF_N = "k-of-n"
DAY_MS = 86_400_000
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
# Functions a rule may call: CEL operators and the standard library. Anything
# else (a host function, an extension) is refused at registration.
_STD_FUNCS = frozenset(
    [
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "has",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "type",
        "dyn",
        "exists",
        "all",
        "exists_one",
        "map",
        "filter",
        "lowerAscii",
        "upperAscii",
    ]
)


class PolicyError(ValueError):
    """A policy map is malformed; the message says which field and why."""


class RuleError(PolicyError):
    """An `auto_approve` rule does not parse, calls what it may not, or exceeds a limit."""

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit
        """The limit exceeded (`depth`, `cost`, ...; see `sharechain.contracts.rules`), or empty."""


class RuleCrashError(RuleError):
    """The CEL evaluator itself failed (a Rust panic): the rule's outcome is undefined."""


def _guarded(rule: str, action: str, call: Any, *args: Any) -> Any:
    """`call(*args)`, turning a crash of the native evaluator into `RuleCrashError`.

    A Rust panic surfaces as `pyo3_runtime.PanicException`, a `BaseException`:
    left alone it would unwind through the block builder. It is deterministic
    (same rule, same input, same evaluator everywhere), so refusing is too.
    Interrupts and exits still propagate.
    """
    try:
        return call(*args)
    except Exception:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise RuleCrashError(
            f"auto_approve rule {rule[:80]!r} crashed the CEL evaluator while {action} "
            f"({type(exc).__name__}: {str(exc)[:200]})",
            "crash",
        ) from None


@dataclass(frozen=True, slots=True)
class Approval:
    """Who must approve a request."""

    mode: str = JOINT
    """`owner+supervisor` (the owner and one supervisor) or `k-of-n`."""
    k: int = 2
    """For `k-of-n`: how many of `of` must approve."""
    of: tuple[str, ...] = ()
    """For `k-of-n`: the organisations whose approvals count."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The terms under which a dataset is shared."""

    approval: Approval = Approval()
    """Who must approve."""
    auto_approve: tuple[str, ...] = ()
    """CEL rules; a request that satisfies any one is granted at once."""
    purposes: tuple[str, ...] = ()
    """Allowed purposes; empty allows any purpose."""
    max_duration: int = 30 * DAY_MS
    """Longest grant in ms of block time."""
    max_uses: int = 0
    """Most key releases per grant; 0 means unlimited."""
    masking: tuple[tuple[str, str], ...] = ()
    """(classification, profile digest in hex) pairs: the masked release a grantee gets."""
    privacy_budget: str = ""
    """Most epsilon (a fraction as text, e.g. `3/2`) one grantee may be released; empty: none."""

    def masking_for(self, classification: str) -> str:
        return dict(self.masking).get(classification, "")


def parse_duration(value: Any, field: str = "duration") -> int:
    """Milliseconds from an integer (ms) or text like `30d`, `12h`, `90m`, `45s`."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise PolicyError(f"{field} must be a positive number of ms or text like 30d, 12h, 90m")


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> tuple[Any, int]:
    # The limits come first: the evaluator's own parser is recursive and a
    # deeply nested rule overflows its stack (a crash no handler can catch).
    try:
        cost = check_rule(source)
    except RuleLimitError as exc:
        if exc.limit != "syntax":
            raise RuleError(f"auto_approve rule {source[:80]!r} {exc}", exc.limit) from None
        # Within the length limit the evaluator's parser is safe, and its
        # message (line, column, caret) says best what is wrong.
        _parsed(source)
        raise RuleError(
            f"auto_approve rule {source!r} uses syntax rules may not use: {exc}", exc.limit
        ) from None
    program = _parsed(source)
    bad = [f for f in program.functions() if not (f.startswith(("_", "@", "!")) or f in _STD_FUNCS)]
    if bad:
        raise RuleError(
            f"auto_approve rule {source!r} calls {', '.join(sorted(bad))}; only CEL's "
            "standard functions are allowed",
            "functions",
        )
    return program, cost


@functools.cache
def _cel() -> Any:
    """The CEL library, imported at the first rule compiled: its package also loads its
    interactive shell (prompt_toolkit), about 0.1 s that commands reading no rule skip."""
    import cel

    return cel


def _parsed(source: str) -> Any:
    compile = _cel().compile  # imported here, not on the guard's thread
    try:
        return _guarded(source, "compiling", compile, source)
    except RuleError:
        raise
    except (ValueError, RuntimeError, TypeError) as exc:
        raise RuleError(f"auto_approve rule {source!r} does not parse: {exc}") from None


def compile_rule(source: str) -> Any:
    """Check a CEL rule against the limits and compile it; raises `RuleError`."""
    return _compiled(source)[0]


def rule_cost(source: str) -> int:
    """The estimated evaluation cost (steps) of a rule; raises `RuleError`."""
    return _compiled(source)[1]


def _names(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{field} must be a list of non-empty names")
    return tuple(value)


def _approval(value: Any) -> Approval:
    if value is None:
        return Approval()
    if isinstance(value, str):
        if value != JOINT:
            raise PolicyError(f"approval must be {JOINT!r} or a map {{any: K, of: [ORG, ...]}}")
        return Approval()
    if not isinstance(value, Mapping) or set(value) - {"any", "of", "require"}:
        raise PolicyError("approval must be a map with `require` or with `any` and `of`")
    if "require" in value:
        return _approval(value["require"])
    of = _names(value.get("of"), "approval.of")
    k = value.get("any")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(of):
        raise PolicyError(f"approval.any must be an integer from 1 to {len(of)} (len of `of`)")
    if len(set(of)) != len(of):
        raise PolicyError("approval.of lists an organisation twice")
    return Approval(K_OF_N, k, of)


_FIELDS = {
    "approval",
    "auto_approve",
    "purposes",
    "max_duration",
    "max_uses",
    "masking",
    "privacy_budget",
}
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def parse_epsilon(value: Any, field: str) -> Fraction:
    """A positive epsilon from an integer, a decimal or fraction text (`0.5`, `1/2`)."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        eps = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise PolicyError(f"{field} must be a positive number such as 2, 0.5 or 1/2") from None
    if eps <= 0:
        raise PolicyError(f"{field} must be a positive number such as 2, 0.5 or 1/2")
    return eps


def policy_from_mapping(m: Mapping[str, Any] | None) -> Policy:
    """Parse and validate a policy map (from the chain or a YAML file)."""
    if m is None:
        return Policy()
    if not isinstance(m, Mapping):
        raise PolicyError("a policy must be a map")
    unknown = set(m) - _FIELDS
    if unknown:
        raise PolicyError(
            f"unknown policy field(s) {', '.join(sorted(map(str, unknown)))}; "
            f"expected some of {', '.join(sorted(_FIELDS))}"
        )
    rules = _names(m.get("auto_approve", []), "auto_approve")
    if len(rules) > MAX_RULES:
        raise RuleError(
            f"auto_approve has {len(rules)} rules; at most {MAX_RULES} (limit on rules)", "rules"
        )
    cost = sum(rule_cost(rule) for rule in rules)
    if cost > MAX_COST:
        raise RuleError(
            f"auto_approve rules may take about {cost:,} evaluation steps together; at most "
            f"{MAX_COST:,} (limit on evaluation cost)",
            "evaluation cost",
        )
    max_uses = m.get("max_uses", 0)
    if not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 0:
        raise PolicyError("max_uses must be a non-negative integer (0: unlimited)")
    masking = m.get("masking", {})
    if not isinstance(masking, Mapping):
        raise PolicyError("masking must be a map from classification to masking profile")
    for cls, profile in masking.items():
        if cls not in CLASSIFICATIONS:
            raise PolicyError(f"masking: {cls!r} is not one of {', '.join(CLASSIFICATIONS)}")
        if not isinstance(profile, str) or not _HEX_DIGEST.fullmatch(profile):
            raise PolicyError(
                f"masking.{cls} must be a registered masking profile's digest (64 hex digits; "
                "`sharechain profile register FILE` prints it)"
            )
    budget = m.get("privacy_budget")
    budget_text = "" if budget is None else str(parse_epsilon(budget, "privacy_budget"))
    return Policy(
        approval=_approval(m.get("approval")),
        auto_approve=rules,
        purposes=_names(m.get("purposes", []), "purposes"),
        max_duration=parse_duration(m.get("max_duration", 30 * DAY_MS), "max_duration"),
        max_uses=max_uses,
        masking=tuple(sorted(masking.items())),
        privacy_budget=budget_text,
    )


def policy_to_value(p: Policy) -> dict[str, Any]:
    """The canonical map of a policy (what the chain stores)."""
    approval: Any = (
        JOINT if p.approval.mode == JOINT else {"any": p.approval.k, "of": list(p.approval.of)}
    )
    return {
        "approval": approval,
        "auto_approve": list(p.auto_approve),
        "purposes": list(p.purposes),
        "max_duration": p.max_duration,
        "max_uses": p.max_uses,
        "masking": dict(p.masking),
        **({"privacy_budget": p.privacy_budget} if p.privacy_budget else {}),
    }


def auto_approved(p: Policy, variables: Mapping[str, Any]) -> str | None:
    """The first rule that holds for `variables`, or None.

    A rule that fails to evaluate (missing field, type error) does not hold:
    auto-approval must be earned, never granted by accident. A crash of the
    evaluator itself raises `RuleCrashError` (the contract refuses the request).
    """
    for rule in p.auto_approve:
        try:
            if _guarded(rule, "evaluating", compile_rule(rule).execute, dict(variables)) is True:
                return rule
        except RuleCrashError:
            raise
        except Exception:  # any evaluation error means "no" (see docstring)
            continue
    return None
