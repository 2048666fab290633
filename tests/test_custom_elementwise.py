"""``custom(fn, elementwise=True)``: a user law drawn tile by tile (no framework needed).

The user's word that ``fn`` draws each element independently lets the stream rule treat the
law as it treats uniform or normal: one call per tile, each tile from its own generator, on the
pool's threads, and a region (a shard) costs only the tiles it meets. What is checked here: the
spec (repr, dicts, text, bad values), the stream rule's numbers -- recomputed by hand from
NumPy's ``SeedSequence``, not by the code under test --, that a one-tile tensor keeps the
numbers of ``elementwise=False``, regions, writing into a strided buffer, the fence's messages
with whole-tensor indices, and that the law runs on the pool's threads.
"""

from __future__ import annotations

import re
import threading
import warnings

import numpy as np
import pytest

import multiinit as mi
from multiinit import reference, stream
from multiinit.reference import law_values


def _law(rng, shape, dtype):
    w = rng.uniform(-10, 10, shape)
    return w * (np.abs(w) >= 5)


TILED = mi.custom(_law, name="tests.elementwise.law", elementwise=True)
WHOLE = mi.custom(_law, name="tests.elementwise.whole")


def _by_hand(
    key: tuple[int, ...], shape: tuple[int, int], rows: list[int], cols: list[int], dtype: type = np.float32
) -> np.ndarray:
    """The stream rule for a 2-D tensor cut at ``rows`` x ``cols``, from NumPy alone: tile t
    (row-major) draws from default_rng(SeedSequence(key, spawn_key=(t,))), cast once to ``dtype``."""
    out = np.empty(shape, dtype=dtype)
    t = 0
    for r0, r1 in zip([0, *rows], [*rows, shape[0]], strict=True):
        for c0, c1 in zip([0, *cols], [*cols, shape[1]], strict=True):
            rng = np.random.default_rng(np.random.SeedSequence(list(key), spawn_key=(t,)))
            out[r0:r1, c0:c1] = _law(rng, (r1 - r0, c1 - c0), None)
            t += 1
    return out


# --------------------------------------------------------------------------- the spec


def test_the_flag_shows_in_repr_dicts_and_text_and_old_dicts_read_as_before() -> None:
    assert repr(TILED) == "custom(name='tests.elementwise.law', elementwise=True)"
    assert repr(WHOLE) == "custom(name='tests.elementwise.whole')"
    assert TILED.to_dict() == {"kind": "custom", "name": "tests.elementwise.law", "elementwise": True}
    assert WHOLE.to_dict() == {"kind": "custom", "name": "tests.elementwise.whole"}  # as before the flag
    assert mi.from_dict(TILED.to_dict()) == TILED
    assert mi.from_dict({"kind": "custom", "name": "tests.elementwise.law"}).elementwise is False
    assert mi.parse(repr(TILED)) == TILED
    assert mi.parse("custom(elementwise=True, name='tests.elementwise.law')") == TILED
    assert mi.parse("custom(name='tests.elementwise.law', elementwise=False)").elementwise is False
    assert mi.custom(_law, name="tests.elementwise.law") != TILED


def test_the_decorator_takes_the_flag() -> None:
    @mi.custom(name="tests.elementwise.decorated", elementwise=True)
    def law(rng, shape, dtype):
        return rng.random(shape)

    assert law.elementwise and law.name == "tests.elementwise.decorated"


@pytest.mark.parametrize("bad", [1, 0, "yes", None, np.bool_(True)])
def test_anything_but_a_bool_is_refused_by_name(bad) -> None:
    with pytest.raises(mi.SpecTypeError, match=r"custom: elementwise=.* must be True or False"):
        mi.custom(_law, name="tests.elementwise.bad", elementwise=bad)
    with pytest.raises(mi.SpecTypeError, match="elementwise"):
        mi.from_dict({"kind": "custom", "name": "tests.elementwise.law", "elementwise": bad})


def test_text_refuses_other_arguments() -> None:
    for text in (
        "custom(name='tests.elementwise.law', elementwise=True, extra=1)",
        "custom('tests.elementwise.law', elementwise=True)",
    ):
        with pytest.raises(mi.SpecError, match="takes only name="):
            mi.parse(text)


def test_an_elementwise_law_is_elementwise_for_the_stream_rule_and_in_mixtures() -> None:
    assert stream.is_elementwise(TILED) and not stream.is_elementwise(WHOLE)
    assert stream.is_elementwise(mi.mixture([(0.5, mi.zeros()), (0.5, TILED)]))
    assert not stream.is_elementwise(mi.mixture([(0.5, mi.zeros()), (0.5, WHOLE)]))


# --------------------------------------------------------------------------- the numbers


def test_several_tiles_follow_the_stream_rule_recomputed_by_hand() -> None:
    # (515, 530): 2x2 tiles cut at row 258 and column 265 (each tile >= 65,536 elements).
    got = reference.sample(TILED, (515, 530), seed=(7, 3))
    assert np.array_equal(got, _by_hand((7, 3), (515, 530), [258], [265]))
    assert np.array_equal(law_values(TILED, (7, 3), (515, 530)), got)


def test_one_tile_keeps_the_numbers_of_a_whole_tensor_law() -> None:
    for shape in ((64, 32), (3, 5, 7)):
        assert np.array_equal(
            reference.sample(TILED, shape, seed=(7, 3)), reference.sample(WHOLE, shape, seed=(7, 3))
        )
        assert np.array_equal(law_values(TILED, (11, 2), shape), law_values(WHOLE, (11, 2), shape))
    # ... and the generator a key always gave a whole-tensor law
    by_hand = _law(np.random.default_rng([11, 2]), (64, 32), None).astype(np.float32)
    assert np.array_equal(law_values(WHOLE, (11, 2), (64, 32)), by_hand)
    assert np.array_equal(
        law_values(WHOLE, (11, 2), (1024, 1024)),
        _law(np.random.default_rng([11, 2]), (1024, 1024), None).astype(np.float32),
    )


def test_a_region_costs_only_the_tiles_it_meets_and_matches_the_whole() -> None:
    calls: list[tuple[int, ...]] = []

    def law(rng, shape, dtype):
        calls.append(tuple(shape))
        return rng.standard_normal(shape)

    spec = mi.custom(law, name="tests.elementwise.counted", elementwise=True)
    whole = law_values(spec, (1, 2), (515, 530))
    assert sorted(calls) == sorted([(258, 265), (258, 265), (257, 265), (257, 265)])
    calls.clear()
    box = (slice(0, 200), slice(100, 250))  # inside tile 0
    part = law_values(spec, (1, 2), (515, 530), box=box)
    assert calls == [(258, 265)] and np.array_equal(part, whole[box])
    calls.clear()
    box = (slice(250, 300), slice(0, 530))  # tiles 0, 1, 2, 3
    assert np.array_equal(law_values(spec, (1, 2), (515, 530), box=box), whole[box]) and len(calls) == 4
    # A whole-tensor law always costs one whole call, and a region is its part.
    plain = mi.custom(law, name="tests.elementwise.counted_whole")
    calls.clear()
    assert np.array_equal(
        law_values(plain, (1, 2), (515, 530), box=box), law_values(plain, (1, 2), (515, 530))[box]
    )
    assert calls == [(515, 530), (515, 530)]


def test_tiles_are_written_into_a_strided_buffer_in_its_layout() -> None:
    # What the Keras and Flax adapters do: the logical view of an (in, out) buffer.
    native = np.full((530, 515), np.nan, dtype=np.float32)
    returned = law_values(TILED, (4, 0), (515, 530), out=native.T)
    assert returned is not None and np.array_equal(native.T, _by_hand((4, 0), (515, 530), [258], [265]))
    half = np.empty((515, 530), dtype=np.float16)
    law_values(TILED, (4, 0), (515, 530), "float16", out=half)
    assert np.array_equal(half, _by_hand((4, 0), (515, 530), [258], [265], np.float16))


def test_the_law_runs_on_the_pools_threads(monkeypatch) -> None:
    monkeypatch.setenv("MULTIINIT_THREADS", "2")
    names: set[str] = set()

    def law(rng, shape, dtype):
        names.add(threading.current_thread().name)
        return rng.random(shape)

    law_values(mi.custom(law, name="tests.elementwise.threads", elementwise=True), (0,), (1024, 1024))
    assert any(name.startswith("multiinit") for name in names), names


class _SlowArray:
    """A law result that NumPy converts through ``__array__``, slowly: two tiles are then
    converted at the same time on the pool's two threads."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        import time

        time.sleep(0.01)  # lets the other thread run (sleep releases the GIL)
        return self.values


def test_tiles_converted_at_once_leave_the_warning_filters_as_they_were(monkeypatch) -> None:
    # The conversion hides NumPy 1.x's ragged-list warning inside warnings.catch_warnings,
    # which swaps the process's filter list: two threads inside it at once could leave one
    # thread's "ignore" filter installed for good.
    import warnings

    monkeypatch.setenv("MULTIINIT_THREADS", "2")
    slow = mi.custom(lambda rng, shape, dtype: _SlowArray(rng.random(shape)), name="t.slow", elementwise=True)
    plain = mi.custom(lambda rng, shape, dtype: rng.random(shape), name="tests.plain", elementwise=True)
    before = list(warnings.filters)
    got = law_values(slow, (3,), (512, 1024))  # 8 tiles
    assert warnings.filters == before
    assert np.array_equal(got, law_values(plain, (3,), (512, 1024)))  # the same numbers, converted


def test_a_mixture_of_an_elementwise_law_draws_it_per_tile() -> None:
    calls: list[tuple[int, ...]] = []

    def law(rng, shape, dtype):
        calls.append(tuple(shape))
        return rng.uniform(1, 2, shape)

    spec = mi.mixture(
        [(0.5, mi.zeros()), (0.5, mi.custom(law, name="tests.elementwise.in_mixture", elementwise=True))]
    )
    values = reference.sample(spec, (515, 530), seed=(0, 0))
    # The reference's one-draw mixture asks each tile's component for as many values as it picked.
    assert len(calls) == 4 and all(len(shape) == 1 for shape in calls)
    assert sum(shape[0] for shape in calls) == int(np.count_nonzero(values))
    assert ((values == 0) | ((values >= 1) & (values <= 2))).all()


# --------------------------------------------------------------------------- the fence


def test_a_bad_value_in_a_tile_is_named_with_its_index_in_the_whole_tensor() -> None:
    def law(rng, shape, dtype):
        out = rng.random(shape)
        if shape == (257, 265):  # the two tiles of the second row of tiles
            out[5, 7] = np.nan
        return out

    spec = mi.custom(law, name="tests.elementwise.nan", elementwise=True)
    with pytest.raises(mi.LawError) as info:
        law_values(spec, (0,), (515, 530), path="head.weight")
    text = str(info.value)
    assert text.startswith(
        "custom law 'tests.elementwise.nan' at 'head.weight' returned 1 NaN values for the tile at (258, "
    )
    assert "(the first at index (263, " in text and "of shape (257, 265)" in text


def test_a_value_too_large_in_a_tile_is_named_with_its_index_in_the_whole_tensor() -> None:
    def law(rng, shape, dtype):
        out = rng.random(shape)
        out[-1, -1] = 1e300
        return out

    spec = mi.custom(law, name="tests.elementwise.large", elementwise=True)
    with pytest.raises(
        mi.LawError, match=r"too large for float32 for the tile at \(0, 0\) of shape \(258, 265\)"
    ):
        reference.sample(spec, (515, 530), seed=(0, 0))
    # Through a transposed view (Keras' and Flax's kernels), where the tile is cast before it is
    # copied: the same error, and the cast's overflow warning does not reach the user.
    native = np.empty((530, 515), dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(mi.LawError, match=r"too large for float16 for the tile at \(0, 0\)"):
            law_values(spec, (0, 0), (515, 530), "float16", out=native.T)


def test_an_exception_in_one_tile_is_a_law_error_after_every_tile_ended() -> None:
    ended: list[tuple[int, ...]] = []

    def law(rng, shape, dtype):
        if shape == (258, 265) and not ended:
            ended.append(shape)
            raise KeyError("boom")
        ended.append(shape)
        return rng.random(shape)

    spec = mi.custom(law, name="tests.elementwise.raises", elementwise=True)
    with pytest.raises(
        mi.LawError, match=r"custom law 'tests\.elementwise\.raises' at 'w' raised KeyError"
    ) as info:
        law_values(spec, (0,), (515, 530), path="w")
    assert isinstance(info.value.__cause__, KeyError)
    assert re.search(r"\(for the tile at \(0, (0|265)\) of shape \(258, 265\)\)$", str(info.value)), str(
        info.value
    )
    assert len(ended) == 4  # every tile ran: nothing still writes when the caller handles the error


def test_law_values_refuses_a_spec_that_is_not_a_custom_law() -> None:
    with pytest.raises(mi.SpecError, match="law_values runs a custom spec"):
        law_values(mi.normal(), (0,), (4, 4))  # type: ignore[arg-type]


def test_explain_says_how_the_function_is_called() -> None:
    assert "called once per tile of the stream rule" in str(mi.explain(TILED, (515, 530)))
    assert "called once for the whole tensor" in str(mi.explain(WHOLE, (515, 530)))


def test_a_wrong_shape_in_a_tile_names_the_tile() -> None:
    def law(rng, shape, dtype):
        return rng.random((shape[0] - 1, shape[1]))

    spec = mi.custom(law, name="tests.elementwise.short", elementwise=True)
    with pytest.raises(
        mi.LawShapeError, match=r"shape \(257, 265\) for the tile at \(0, 0\) of shape \(258, 265\);"
    ):
        law_values(spec, (0,), (515, 530), path="w")
