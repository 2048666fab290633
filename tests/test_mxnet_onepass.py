"""mi.apply on Gluon blocks in one pass (issue 12 for MXNet): every fault found before the first
write leaves every array bit-identical (parameters, running statistics, every context's copy);
user laws are fenced (LawError naming the law and the path); MXNet's deferred initialization
gets the rules at the first forward pass, with the values apply would have written after it;
several contexts, a Trainer's kvstore and row-sparse storage are kept in step; and nothing
model-sized is drawn on the host."""

from __future__ import annotations

import tracemalloc

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from mxnet.gluon import nn

import multiinit as mi
from multiinit import stats
from multiinit.errors import LawError

from test_mxnet_initializer import mode  # noqa: F401 - the nd / np array-mode fixture


class Tables(gluon.Block):
    """A user block with an integer and a half-precision parameter."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.table = self.params.get("table", shape=(4, 4), dtype="int32", init=mx.init.Zero())
            self.half = self.params.get("half", shape=(8, 4), dtype="float16")


def build() -> nn.Sequential:
    net = nn.Sequential()
    net.add(
        nn.Dense(16, in_units=8),  # 0
        nn.BatchNorm(in_channels=16),  # 1: running statistics are state
        nn.Conv2D(6, 3, in_channels=4),  # 2
        Tables(),  # 3
        nn.Dense(4, in_units=16),  # 4: the last parameters
    )
    net.initialize()
    # Running statistics that are not their initial constants, so a stray write would show.
    rng = np.random.default_rng(0)
    for name in ("running_mean", "running_var"):
        p = getattr(net[1], name)
        p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
    return net


def snapshot(net) -> dict[str, list[np.ndarray]]:
    """Every initialized array of ``net``, every context's copy, by structured path."""
    return {
        path: [a.asnumpy().copy() for a in p._data]
        for path, p in net._collect_params_with_prefix().items()
        if p._data is not None
    }


def assert_untouched(net, before) -> None:
    after = snapshot(net)
    assert after.keys() == before.keys()
    for path, arrays in before.items():
        for old, new in zip(arrays, after[path], strict=True):
            assert old.tobytes() == new.tobytes(), path


def value(net, path: str) -> np.ndarray:
    return dict(net._collect_params_with_prefix())[path].data().asnumpy()


class DistKVStore:
    """Stands in for a distributed kvstore (which needs a scheduler and servers to exist):
    ``Trainer`` only reads its ``type`` before refusing to reset it."""

    type = "dist_sync"


def _custom(name, fn):
    return mi.custom(fn, name=name)


def _make_fault(case: str, net):
    """``(rules, error, message pattern)`` for ``case``, after damaging ``net`` if needed. Every
    rule set first selects parameters that come earlier, so a partial write would show."""
    early = {
        "0.weight": mi.normal(std=0.5),
        "0.bias": mi.uniform(-1, 1),
        "2.weight": mi.he_normal(),
        "1.gamma": mi.truncated_normal(1.0, 0.1),
    }
    if case == "never initialized":
        net.add(nn.Dense(3, in_units=4))  # added after initialize(): no arrays at all
        return {**early, "5.weight": mi.ones()}, mi.RuleError, r"'5\.weight' .*not initialized"
    if case == "read-only array":
        net[4].weight._data[0].writable = False
        return {**early, "4.weight": mi.ones()}, mi.RuleError, r"'4\.weight' .*read-only"
    if case == "random law on int32":
        return {**early, "3.table": mi.normal()}, mi.SpecError, r"'3\.table'.*dtype='int32' is not allowed"
    if case == "fraction on int32":
        return (
            {**early, "3.table": mi.constant(0.5)},
            mi.SpecError,
            r"'3\.table'.*int32 array cannot hold 0\.5",
        )
    if case == "beyond float16":
        return {**early, "3.half": mi.uniform(-1e5, 1e5)}, mi.SpecError, r"'3\.half'.*beyond float16"
    if case == "distributed kvstore":
        trainer = gluon.Trainer(net[4].collect_params(), "sgd", {"learning_rate": 0.1})
        trainer._kv_initialized, trainer._update_on_kvstore = True, True
        trainer._kvstore, trainer._params_to_init = DistKVStore(), []
        return {**early, "4.weight": mi.ones()}, mi.RuleError, r"'4\.weight'.*distributed kvstore"
    if case == "shape misfit":
        return {**early, "4.weight": mi.dirac()}, mi.ShapeError, r"'4\.weight'"
    if case == "law raises":
        law = _custom("onepass.raises", lambda rng, shape, dtype: 1 / 0)
        return (
            {**early, "4.bias": law},
            LawError,
            r"custom law 'onepass\.raises' at '4\.bias' raised ZeroDivisionError",
        )
    if case == "law returns NaN":
        law = _custom("onepass.nan", lambda rng, shape, dtype: np.where(rng.random(shape) < 0.5, np.nan, 0.0))
        return {**early, "4.weight": law}, LawError, r"custom law 'onepass\.nan' at '4\.weight'.*NaN"
    if case == "law returns inf":
        law = _custom("onepass.inf", lambda rng, shape, dtype: np.full(shape, np.inf))
        return {**early, "4.weight": law}, LawError, r"custom law 'onepass\.inf' at '4\.weight'.*infinite"
    if case == "law returns a wrong shape":
        law = _custom("onepass.shape", lambda rng, shape, dtype: np.zeros(3))
        return (
            {**early, "4.weight": law},
            LawError,
            r"custom law 'onepass\.shape' at '4\.weight'.*shape \(3,\)",
        )
    if case == "law returns text":
        law = _custom("onepass.text", lambda rng, shape, dtype: np.full(shape, "x"))
        return {**early, "4.weight": law}, LawError, r"custom law 'onepass\.text' at '4\.weight'.*dtype"
    if case == "law too large for float16":
        law = _custom("onepass.big", lambda rng, shape, dtype: np.full(shape, 1e6))
        return {**early, "3.half": law}, LawError, r"custom law 'onepass\.big' at '3\.half'"
    if case == "law inside a mixture raises":
        law = _custom("onepass.inner", lambda rng, shape, dtype: 1 / 0)
        spec = mi.mixture([(0.5, mi.zeros()), (0.5, law)])
        return {**early, "4.weight": spec}, LawError, r"custom law 'onepass\.inner' at '4\.weight'"
    raise AssertionError(case)


FAULTS = [
    "never initialized",
    "read-only array",
    "random law on int32",
    "fraction on int32",
    "beyond float16",
    "distributed kvstore",
    "shape misfit",
    "law raises",
    "law returns NaN",
    "law returns inf",
    "law returns a wrong shape",
    "law returns text",
    "law too large for float16",
    "law inside a mixture raises",
]


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("case", FAULTS)
def test_every_fault_is_found_before_the_first_write(case, portable) -> None:
    net = build()
    rules, error, pattern = _make_fault(case, net)
    before = snapshot(net)
    with pytest.raises(error, match=pattern):
        mi.apply(net, rules, seed=3, portable=portable)
    assert_untouched(net, before)


def test_a_law_error_chains_the_user_exception_and_is_a_multiinit_error() -> None:
    def broken(rng, shape, dtype):
        raise KeyError("no such table")

    net = build()
    with pytest.raises(LawError) as raised:
        mi.apply(net, {"4.weight": mi.custom(broken, name="onepass.key")}, seed=0)
    assert isinstance(raised.value, mi.MultiinitError) and isinstance(raised.value.__cause__, KeyError)


def test_without_faults_the_same_rules_fill_everything() -> None:
    # The fault cases' rules are fillable once the fault is gone: the errors above are theirs.
    net = build()
    mi.apply(
        net,
        {
            "0.weight": mi.normal(std=0.5),
            "3.table": mi.constant(2),
            "3.half": mi.uniform(-1, 1),
            "4.weight": mi.custom(lambda rng, shape, dtype: rng.random(shape), name="onepass.ok"),
        },
        seed=1,
    )
    assert (value(net, "3.table") == 2).all() and value(net, "3.half").dtype == np.float16
    assert value(net, "4.weight").min() >= 0 and value(net, "4.weight").max() < 1


# --------------------------------------------------------------------------- the compiled form


def test_net_initialize_with_a_failing_law_names_it_and_writes_nothing() -> None:
    bad = mi.compile(
        mi.custom(lambda rng, shape, dtype: np.full(shape, np.nan), name="onepass.init_nan"), "mxnet"
    )
    net = nn.Sequential()
    net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    with pytest.raises(LawError, match=r"custom law 'onepass\.init_nan' at 'dense\d+_weight'.*NaN"):
        net.initialize(bad)
    # Nothing was initialized, and the block can still be initialized.
    assert all(p._data is None for p in net.collect_params().values())
    net.initialize(mx.init.One(), force_reinit=True)
    assert (net[1].weight.data().asnumpy() == 1).all()


def test_the_deferred_forward_with_a_failing_compiled_law_names_it() -> None:
    bad = mi.compile(mi.custom(lambda rng, shape, dtype: np.zeros(3), name="onepass.init_shape"), "mxnet")
    net = nn.Sequential()
    net.add(nn.Dense(4))
    net.initialize(bad)
    with pytest.raises(LawError, match=r"custom law 'onepass\.init_shape' at 'dense\d+_weight'.*shape"):
        net(mx.nd.ones((2, 3)))


# --------------------------------------------------------------------------- deferred initialization


def deferred_net(hybrid: bool = False):
    net = nn.HybridSequential() if hybrid else nn.Sequential()
    net.add(nn.Dense(64, activation="relu"), nn.BatchNorm(), nn.Dense(32), nn.Dense(8))
    net.initialize()
    if hybrid:
        net.hybridize()
    return net


def ones(shape):
    return mx.np.ones(shape) if mx.util.is_np_array() else mx.nd.ones(shape)


RULES = {
    "weight": mi.he_normal(),
    "bias": mi.variance_scaling(1 / 3, "fan_in", "uniform"),
    "gamma": mi.normal(1.0, 0.02),
    "beta": mi.mixture([(0.5, mi.zeros()), (0.5, mi.uniform(0, 1))]),
}


@pytest.mark.usefixtures("mode")
@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
@pytest.mark.parametrize("hybrid", [False, True], ids=["imperative", "hybridized"])
def test_deferred_parameters_get_their_rules_at_the_first_forward(hybrid, portable) -> None:
    x = ones((5, 20))
    deferred = deferred_net(hybrid)
    mi.apply(deferred, RULES, seed=7, portable=portable)
    # Nothing allocated yet: MXNet allocates at the first forward pass.
    assert deferred[0].weight._data is None and deferred[0].weight._deferred_init
    deferred(x)
    eager = deferred_net(hybrid)
    eager(x)
    mi.apply(eager, RULES, seed=7, portable=portable)
    paths = [p for p in dict(eager._collect_params_with_prefix()) if "running" not in p]
    assert len(paths) == 8
    for path in paths:
        np.testing.assert_array_equal(value(deferred, path), value(eager, path), err_msg=path)
    # And the law is the rule's: he_normal with fan_in 20 on the first weight (n = 1,280).
    verdict = stats.check(value(deferred, "0.weight"), mi.he_normal(), reference_seed=None)
    assert verdict.passed, str(verdict)


def test_a_preset_on_a_deferred_block_gives_the_values_it_gives_after_the_forward() -> None:
    # docs/big-models.md's example, smaller: kinds come from the block classes, fans later.
    def block():
        net = nn.Sequential()
        net.add(
            nn.Conv2D(8, 3, activation="relu"), nn.Flatten(), nn.Dense(64, activation="relu"), nn.Dense(10)
        )
        net.initialize(ctx=mx.cpu())
        return net

    x = mx.nd.ones((1, 3, 8, 8))
    deferred = block()
    mi.apply(deferred, mi.presets.torch_default, seed=0)
    deferred(x)
    eager = block()
    eager(x)
    mi.apply(eager, mi.presets.torch_default, seed=0)
    for path in ("0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"):
        np.testing.assert_array_equal(value(deferred, path), value(eager, path), err_msg=path)
    bound = 1 / np.sqrt(8 * 6 * 6)  # torch's Linear default: U(+-1/sqrt(fan_in)), fan_in 288
    assert 0.9 * bound < np.abs(value(deferred, "2.weight")).max() < bound


def test_an_initialized_bias_of_a_deferred_weight_is_filled_when_the_weight_is() -> None:
    # Dense(8) without in_units: the bias (8,) is allocated at initialize(), the weight is not.
    net = nn.Sequential()
    net.add(nn.Dense(4000))
    net.initialize(mx.init.Zero(), ctx=[mx.cpu(0), mx.cpu(1)])
    assert net[0].bias._data is not None and net[0].weight._data is None
    mi.apply(net, {"bias": mi.variance_scaling(1 / 3, "fan_in", "uniform")})  # MXNet's generator
    assert (net[0].bias.data().asnumpy() == 0).all()  # not yet: its fans are not known
    net(mx.nd.ones((1, 25)))
    # torch's default bias for fan_in 25: U(-1/5, 1/5); the weight kept its own initializer.
    first, second = (a.asnumpy() for a in net[0].bias.list_data())
    verdict = stats.check(first, mi.uniform(-0.2, 0.2), reference_seed=None)
    assert verdict.passed, str(verdict)
    np.testing.assert_array_equal(first, second)  # drawn once, copied to the other context
    assert (net[0].weight.data().asnumpy() == 0).all()


def test_a_law_failing_at_the_first_forward_leaves_its_parameter_deferred() -> None:
    calls = []

    def picky(rng, shape, dtype):
        calls.append(shape)
        if len(calls) == 1:
            raise ValueError("not this time")
        return rng.random(shape)

    net = nn.Sequential()
    net.add(nn.Dense(6))
    net.initialize()
    mi.apply(net, {"weight": mi.custom(picky, name="onepass.picky")}, seed=0)
    with pytest.raises(LawError, match=r"custom law 'onepass\.picky' at '0\.weight' raised ValueError"):
        net(mx.nd.ones((2, 3)))
    assert net[0].weight._data is None and net[0].weight._deferred_init  # still deferred
    net(mx.nd.ones((2, 3)))  # the law succeeds now: the parameter is filled by it
    assert calls == [(6, 3), (6, 3)] and net[0].weight.data().asnumpy().min() >= 0


def test_a_dimension_misfit_on_a_deferred_parameter_is_refused_at_apply() -> None:
    net = nn.Sequential()
    net.add(nn.Conv2D(4, 3))
    net.initialize()
    with pytest.raises(mi.ShapeError, match=r"eye\(\) cannot fill '0\.weight'"):
        mi.apply(net, {"weight": mi.eye()})
    assert net[0].weight._deferred_init[0] is not None  # untouched: MXNet's own initializer
    net(mx.nd.ones((1, 2, 5, 5)))


# --------------------------------------------------------------------------- contexts, kvstore, storage


def test_every_context_gets_the_same_values() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(30, in_units=20))
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    mi.apply(net, {"weight": mi.truncated_normal(std=0.1), "bias": mi.ones()}, seed=2)
    first, second = (a.asnumpy() for a in net[0].weight.list_data())
    np.testing.assert_array_equal(first, second)
    assert np.abs(first).max() <= 0.2 + 1e-7 and np.unique(first).size > 500


def test_a_trainer_updating_on_its_kvstore_takes_the_new_values() -> None:
    contexts = [mx.cpu(0), mx.cpu(1)]  # MXNet keeps a kvstore for several devices
    net = nn.Sequential()
    net.add(nn.Dense(5, in_units=3))
    net.initialize(ctx=contexts)
    trainer = gluon.Trainer(
        net.collect_params(), "sgd", {"learning_rate": 0.0}, kvstore="local", update_on_kvstore=True
    )
    inputs = [mx.nd.ones((2, 3), ctx=c) for c in contexts]

    def step() -> None:
        with mx.autograd.record():
            losses = [net(x).sum() for x in inputs]
        for loss in losses:
            loss.backward()
        trainer.step(2)

    step()  # the kvstore now holds the weights
    assert trainer._kv_initialized and trainer._update_on_kvstore
    mi.apply(net, {"weight": mi.constant(0.25)})
    step()  # learning rate 0: a stale kvstore would bring the old weights back
    for copy in net[0].weight.list_data():
        assert (copy.asnumpy() == 0.25).all()


def test_row_sparse_parameters_are_filled_and_stay_row_sparse() -> None:
    from mxnet.gluon.contrib.nn import SparseEmbedding

    net = nn.Sequential()
    net.add(SparseEmbedding(300, 100))
    net.initialize()
    mi.apply(net, {"weight": mi.normal(std=0.5)}, seed=0)
    stored = net[0].weight._data[0]
    assert stored.stype == "row_sparse"
    verdict = stats.check(stored.asnumpy(), mi.normal(std=0.5), reference_seed=None)
    assert verdict.passed, str(verdict)


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_host_draws_hold_far_less_than_the_model(portable) -> None:
    # NumPy's allocations are traced (MXNet's are not): drawing every value first would hold
    # the model's 32 MB here; one pass holds tiles (and threads' temporaries) only.
    net = nn.Sequential()
    net.add(*(nn.Dense(1024, in_units=2048) for _ in range(4)))  # 8 MB of float32 each
    net.initialize()
    rules = {
        "weight": mi.mixture([(0.5, mi.he_normal()), (0.5, mi.uniform(-1, 1))]),
        "bias": mi.truncated_normal(std=0.1),
    }
    tracemalloc.start()
    try:
        mi.apply(net, rules, seed=0, portable=portable)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak host memory {peak / 2**20:.1f} MB"
    verdict = stats.check(value(net, "3.weight"), rules["weight"], reference_seed=None, fans=(2048, 1024))
    assert verdict.passed, str(verdict)


@pytest.mark.parametrize("spec", [mi.he_normal(), mi.sparse(0.2), mi.orthogonal(), mi.eye()], ids=repr)
def test_an_array_without_a_host_view_gets_the_same_values_through_one_copy(spec) -> None:
    # Device arrays have no host view; a read-only CPU array takes the same path here.
    from multiinit.mxnet.host import host_view

    viewless = mx.nd.zeros((300, 200))
    viewless.writable = False
    assert host_view(viewless) is None
    plain = mx.nd.zeros((300, 200))
    for arr in (viewless, plain):
        mi.compile(spec, "mxnet", seed=5)(mx.init.InitDesc("w_weight"), arr)
    np.testing.assert_array_equal(viewless.asnumpy(), plain.asnumpy())
    assert np.unique(plain.asnumpy()).size > 1


def test_a_user_law_in_portable_mode_writes_the_reference_numbers() -> None:
    law = mi.custom(lambda rng, shape, dtype: rng.standard_normal(shape), name="onepass.portable")
    inner = mi.mixture([(0.5, mi.zeros()), (0.5, law)])
    net = build()
    mi.apply(net, {"0.weight": law, "4.weight": inner}, seed=11, portable=True)
    orders = {p.path: p.order for p in mi.mxnet.params_of(net)}
    for path, spec in (("0.weight", law), ("4.weight", inner)):
        expected = mi.reference.sample(spec, value(net, path).shape, seed=(11, orders[path]))
        np.testing.assert_array_equal(value(net, path), expected, err_msg=path)
