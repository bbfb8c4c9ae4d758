"""Tests of the PSI steps: exact intersections, normalisation, caps, what the holder sees."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharechain.crypto import oprf
from sharechain.crypto import ristretto as r255
from sharechain.errors import EncodingError
from sharechain.privacy import psi


def run(
    client: list[str], holder: list[str], case: psi.CaseRule = "fold"
) -> tuple[psi.PsiResult, psi.PsiRequest, psi.PsiResponse]:
    key = oprf.generate_key()
    state, request = psi.client_request(client, case=case)
    request = psi.PsiRequest.decode(request.encode())  # through the wire form
    response = psi.holder_respond(key, request, holder, case=case)
    response = psi.PsiResponse.decode(response.encode())
    return psi.client_finish(state, response), request, response


def expected(client: list[str], holder: list[str], case: psi.CaseRule = "fold") -> set[bytes]:
    return {psi.normalise(x, case) for x in client} & {psi.normalise(y, case) for y in holder}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(max_size=6), max_size=25),
    st.lists(st.text(max_size=6), max_size=25),
    st.lists(st.text(max_size=6), max_size=10),
)
def test_intersection_equals_python_set_intersection(
    client_only: list[str], holder_only: list[str], shared: list[str]
) -> None:
    client, holder = client_only + shared, holder_only + shared[::-1]
    result, _, _ = run(client, holder)
    found = [psi.normalise(x) for x in result.intersection]
    assert len(found) == len(set(found))
    assert set(found) == expected(client, holder)
    assert result.holder_set_size == len({psi.normalise(y) for y in holder})


@pytest.mark.parametrize(
    ("client", "holder", "matches"),
    [
        ([], ["a", "b"], set()),
        (["a", "b"], [], set()),
        (["a", "b"], ["c", "d"], set()),
        (["a", "b", "c"], ["c", "b", "a"], {"a", "b", "c"}),
        (["a", "a", " A ", "b"], ["a", "a"], {"a"}),
    ],
    ids=["empty-client", "empty-holder", "disjoint", "identical", "duplicates"],
)
def test_edge_cases(client: list[str], holder: list[str], matches: set[str]) -> None:
    result, _, _ = run(client, holder)
    assert {psi.normalise(x) for x in result.intersection} == {m.encode() for m in matches}
    assert len(result.intersection) == len(matches)


def test_unicode_variants_match_and_the_client_keeps_its_spelling() -> None:
    nfd = unicodedata.normalize("NFD", "Zoë Straße")
    result, _, _ = run([" ZOË STRASSE\t", "Other"], [nfd])
    assert result.intersection == (" ZOË STRASSE\t",)
    exact, _, _ = run(["ZOË"], [unicodedata.normalize("NFD", "zoë")], case="exact")
    assert exact.intersection == ()
    exact, _, _ = run(["Zoë "], [unicodedata.normalize("NFD", "Zoë")], case="exact")
    assert exact.intersection == ("Zoë ",)


def test_holder_view_does_not_contain_the_client_elements() -> None:
    client = ["alice@example.org", "bob@example.org", "carol@example.org"]
    key = oprf.generate_key()
    _, first = psi.client_request(client)
    _, second = psi.client_request(client)
    view = first.encode()
    for element in client:
        data = psi.normalise(element)
        point = r255.hash_to_group(data, b"HashToGroup-" + oprf.CONTEXT_STRING)
        assert data not in view and element.encode() not in view
        assert point not in view and r255.mul(key, point) not in view
        assert oprf.evaluate(key, data)[: psi.TAG_SIZE] not in view
    # The same set blinded twice shares nothing: sessions cannot be linked.
    assert not set(first.blinded) & set(second.blinded)
    assert len(view) == 1 + 4 + 32 * len(client)


def test_caps_are_enforced_before_any_work() -> None:
    with pytest.raises(psi.PsiLimitError, match="cap of 2"):
        psi.client_request(["a", "b", "c"], max_size=2)
    _, request = psi.client_request(["a", "b", "c"])
    with pytest.raises(psi.PsiLimitError, match="cap of 2"):
        psi.holder_respond(oprf.generate_key(), request, ["a"], max_request=2)


def test_hostile_or_mismatched_messages_are_refused() -> None:
    key = oprf.generate_key()
    bad = psi.PsiRequest((r255.GENERATOR, r255.IDENTITY))
    with pytest.raises(r255.InvalidPointError, match="identity"):
        psi.holder_respond(key, bad, ["a"])
    state, request = psi.client_request(["a", "b"])
    short = psi.PsiResponse(psi.holder_respond(key, request, ["a"]).evaluated[:1], ())
    with pytest.raises(EncodingError, match="another request"):
        psi.client_finish(state, short)
    with pytest.raises(EncodingError, match="another size"):
        psi.PsiRequest.decode(request.encode()[:-1])
    with pytest.raises(EncodingError, match="truncated"):
        psi.PsiResponse.decode(b"\x01\x00")
    with pytest.raises(EncodingError, match="version 1"):
        psi.PsiRequest.decode(b"\x02" + request.encode()[1:])
    with pytest.raises(EncodingError, match="case rule"):
        psi.normalise("a", "upper")  # type: ignore[arg-type]  # a wrong rule on purpose


@pytest.mark.parametrize(
    ("point", "why"),
    [(r255.IDENTITY, "identity element"), (b"\xff" * 32, "not a valid ristretto255 encoding")],
)
def test_a_response_with_a_bad_point_is_refused_by_the_client(point: bytes, why: str) -> None:
    client = ["secret-customer-1", "secret-customer-2"]
    key = oprf.generate_key()
    state, request = psi.client_request(client)
    good = psi.holder_respond(key, request, ["secret-customer-1"])
    bad = psi.PsiResponse((good.evaluated[0], point), good.tags)
    with pytest.raises(r255.InvalidPointError, match=why) as err:
        psi.client_finish(state, psi.PsiResponse.decode(bad.encode()))
    assert "secret-customer" not in str(err.value)  # the error names no element
