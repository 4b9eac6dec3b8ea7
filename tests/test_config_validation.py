"""Bad configs are refused at construction, with a ValueError naming the dotted key, the value
and what is allowed; configs that pass run.

One test per way a config used to get through (or fail unclearly), then a property test:
any random config dict, for every scenario, is either refused that way at construction or
runs 3 steps with finite observations and rewards.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentcomm
from agentcomm.envs import env_class, list_envs

SR = "SearchRescue-v0"


def _steps(world, n: int = 3) -> None:
    """Reset, then ``n`` random steps; observations and rewards must stay finite."""
    gen = torch.Generator().manual_seed(0)
    obs = world.reset()
    assert bool(torch.isfinite(obs).all())
    for _ in range(n):
        actions = torch.rand(world.num_envs, world.num_agents, 6, generator=gen) * 2 - 1
        obs, rew, term, trunc, _ = world.step(actions)
        assert bool(torch.isfinite(obs).all()) and bool(torch.isfinite(rew).all())
        done = term | trunc
        if bool(done.any()):
            world.reset_at(done)


def _refused(match: str, env_id: str = SR, **config) -> str:
    with pytest.raises(ValueError, match=match) as info:
        agentcomm.make_vec(env_id, num_envs=1, seed=0, **config)
    return str(info.value)


# ----------------------------------------------------------------------------- None
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"num_agents": None}, "num_agents"),
        ({"max_speed": None}, "max_speed"),
        ({"sensing": {"pd": None}}, "sensing.pd"),
        ({"channel": {"erasure_prob": None}}, "channel.erasure_prob"),
        ({"comm": {"codec_params": None}}, "comm.codec_params"),
    ],
)
def test_none_is_refused_where_the_field_is_not_optional(config, key):
    msg = _refused(rf"^{re.escape(key)}=None is not allowed; expected ", **config)
    assert "None" in msg


def test_comm_mode_none_does_not_turn_communication_off():
    _refused(r"^comm\.mode=None is not allowed; expected a string", comm={"mode": None})


def test_documented_optional_fields_take_none():
    world = agentcomm.make_vec(SR, seed=0, base=None, comm={"fc_position": None})
    assert world.config.base is None and world.config.comm.fc_position is None


# ----------------------------------------------------------------------------- sections
@pytest.mark.parametrize(
    ("section", "value"),
    [("comm", 3), ("channel", "awgn"), ("sensing", [0.9, 0.05]), ("comm", None)],
)
def test_a_section_that_is_not_a_mapping_is_refused_naming_it(section, value):
    msg = _refused(rf"^{section}={re.escape(repr(value))} is not allowed", **{section: value})
    assert "expected a mapping of" in msg and "allowed keys" in msg


def test_a_non_string_key_inside_a_section_is_named():
    _refused(r"unknown config key\(s\) \['comm\.3'\]", comm={3: 1})


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"max_speed": math.inf}, "max_speed"),
        ({"rescue_reward": math.inf}, "rescue_reward"),
        ({"channel": {"k_factor": math.inf}}, "channel.k_factor"),
        ({"channel": {"cell_size_m": math.inf}}, "channel.cell_size_m"),
        ({"sensing": {"radius": math.inf}}, "sensing.radius"),
        ({"channel": {"ref_distance_m": math.inf}}, "channel.ref_distance_m"),
        ({"comm": {"cost_per_channel_use": math.inf}}, "comm.cost_per_channel_use"),
        ({"crop_size": 5, "info_gain_weight": math.inf}, "info_gain_weight"),
    ],
)
def test_open_upper_bounds_refuse_inf(config, key):
    _refused(rf"^{re.escape(key)}=inf is not allowed; expected a finite real number", **config)


@pytest.mark.parametrize(
    ("env_id", "config", "key"),
    [
        (SR, {"rescue_reward": 1e39}, "rescue_reward"),  # overflowed float32 rewards
        (SR, {"max_speed": 5e-324}, "max_speed"),  # observations divide by it
        (SR, {"sensing": {"radius": 1e300}}, "sensing.radius"),
        ("TargetTracking-v0", {"target_max_speed": 1e20}, "target_max_speed"),
        ("TargetTracking-v0", {"accel_std": 1e20}, "accel_std"),
        ("IntentCoverage-v0", {"success_reward": 1e39}, "success_reward"),
    ],
)
def test_finite_extremes_that_break_the_step_are_out_of_range(env_id, config, key):
    _refused(rf"^{re.escape(key)}=.* is out of range; allowed ", env_id, **config)


def test_compile_fusion_is_a_bool():
    _refused(
        r"^compile_fusion='yes' is not allowed; expected true or false",
        "TargetTracking-v0",
        compile_fusion="yes",
    )


def test_numpy_integers_are_accepted_as_ints():
    world = agentcomm.make_vec(
        SR, seed=np.int64(3), num_agents=np.int64(3), grid_size=np.int32(8), obs_map_size=4
    )
    assert type(world.config.num_agents) is int and type(world.config.grid_size) is int
    assert world.config.to_dict()["num_agents"] == 3
    _steps(world, 1)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"base": [True, 2.0]}, "base[0]"),
        ({"comm": {"fc_position": [1.0, False]}}, "comm.fc_position[1]"),
    ],
)
def test_bools_are_not_numbers(config, key):
    _refused(rf"^{re.escape(key)}=(True|False) is not allowed", **config)


def test_bools_are_not_integers_in_lists():
    from agentcomm.experiments.study import ExperimentConfig
    from agentcomm.policies.train import TrainConfig

    with pytest.raises(
        ValueError, match=r"^gaussian\.hidden\[0\]=True is not allowed; expected an integer"
    ):
        TrainConfig.from_dict({"gaussian": {"hidden": [True, 8]}})
    with pytest.raises(ValueError, match=r"^seeds\[0\]=True is not allowed; expected an integer"):
        ExperimentConfig(seeds=(True,))


@pytest.mark.parametrize("seed", [1.5, True, "7", -1, math.nan])
def test_make_vec_refuses_a_seed_that_is_not_an_integer(seed):
    with pytest.raises(ValueError, match=r"^seed="):
        agentcomm.make_vec(SR, seed=seed)


def test_an_integer_field_refuses_a_fraction():
    _refused(r"^max_steps=1\.5 is not allowed; expected an integer", max_steps=1.5)


# ----------------------------------------------------------------------------- cross-field
@pytest.mark.parametrize(
    ("sensing", "match"),
    [
        ({"pd": 1.0}, r"^sensing\.pd=1\.0 is out of range; allowed \(0\.0, 1\.0\)"),
        ({"pfa": 0.0}, r"^sensing\.pfa=0\.0 is out of range; allowed \(0\.0, 1\.0\)"),
        ({"pd": 0.3, "pfa": 0.3}, r"sensing\.pfa=0\.3 must be smaller than sensing\.pd=0\.3"),
    ],
)
def test_sensor_constraints_are_checked_at_construction(sensing, match):
    _refused(match, sensing=sensing)


@pytest.mark.parametrize(
    ("comm", "match"),
    [
        ({"codec": "quantized", "codec_params": {"bogus": 1}}, r"^comm\.codec_params=.*bogus"),
        ({"codec": "quantized", "codec_params": {"bits_per_value": 0}}, r"^comm\.codec_params="),
        ({"codec": "topk", "codec_params": {"rate": -1.0}}, r"^comm\.codec_params="),
        ({"codec_params": {3: 1}}, r"^comm\.codec_params has the key 3"),
    ],
)
def test_codec_parameters_are_checked_against_the_config_key(comm, match):
    _refused(match, comm=comm)


def test_a_learned_codec_without_a_model_for_the_payload_is_refused_naming_the_codec():
    _refused(r"^comm\.codec='jscc' needs a trained model", grid_size=8, comm={"codec": "jscc"})


# ----------------------------------------------------------------------------- grid size
def test_the_largest_documented_grid_runs_without_a_quadratic_table(monkeypatch):
    """grid_size=256 is in the documented range; the intent-order table would be
    [65536, 65536] int64 (34 GB), so large grids must sort per message instead."""
    import agentcomm.codecs.intent as intent

    real = intent._cell_order_table

    def guarded(h, w, *args):
        assert (h * w) ** 2 * 8 <= 2**30, f"a {h}x{w} grid would build a quadratic table"
        return real(h, w, *args)

    monkeypatch.setattr(intent, "_cell_order_table", guarded)
    goals = torch.tensor([[0.0, 0.0], [100.0, 17.0], [255.0, 255.0]])
    order = intent.intent_order((256, 256), goals)
    squared = intent._squared_distance((256, 256), goals)
    assert torch.equal(order, torch.sort(squared, dim=1, stable=True).indices)
    world = agentcomm.make_vec(SR, seed=0, grid_size=256, num_agents=2)
    _steps(world, 1)


# ----------------------------------------------------------------------------- adapters, device
def test_gymnasium_refuses_an_env_id_other_than_the_registered_one():
    import gymnasium

    import agentcomm.envs  # noqa: F401  (registers the ids)

    with pytest.raises(ValueError, match=r"env_id='TargetTracking-v0' is not allowed"):
        gymnasium.make("agentcomm/SearchRescue-v0", env_id="TargetTracking-v0")
    with pytest.raises(ValueError, match=r"env_id='TargetTracking-v0' is not allowed"):
        gymnasium.make_vec(
            "agentcomm/SearchRescue-v0",
            num_envs=2,
            vectorization_mode="vector_entry_point",
            env_id="TargetTracking-v0",
        )
    env = gymnasium.make("agentcomm/SearchRescue-v0")
    assert env.unwrapped.world.env_id == SR


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match=r"^device='cuda' is not available: torch\.cuda\."):
        agentcomm.make_vec(SR, device="cuda")
    from agentcomm.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--device", "cuda", "--algo", "bc"])
    assert info.value.code == 2
    assert "--device='cuda' is not available" in capsys.readouterr().err


# ----------------------------------------------------------------------------- property
_SIZES = {
    # Size fields draw from a short list (in range and out of it) so no example is huge.
    "grid_size": [4, 8, 16, 3, 0, -4, 257],
    "num_agents": [1, 2, 3, 0, 257],
    "obs_map_size": [1, 2, 4, 8, 0, 3],
    "num_victims": [1, 2, 5, 0, 10_000],
    "num_targets": [1, 2, 0, 65],
    "crop_size": [1, 3, 5, 4, 0],
    "max_steps": [1, 2, 5, 0],
    "consensus_rounds": [1, 2, 0, 33],
    "budget": [0, 4, 64, -1, 100_001],
}
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-20.0, 20.0),
    st.text(max_size=4),
    st.lists(st.integers(-2, 20), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(0, 40).map(np.int64),
    st.floats(0.0, 1.0).map(np.float32),
)


def _valid_value(name: str, tp, meta) -> st.SearchStrategy | None:
    """Values the field's own documentation allows (cross-field rules may still refuse)."""
    if name in _SIZES:
        return st.sampled_from([v for v in _SIZES[name] if v > 0][:3])
    if "choices" in meta:
        return st.sampled_from(meta["choices"])
    if "range" in meta and tp in (int, float):
        lo, hi, _, _ = meta["range"]
        lo = 0.0 if lo is None else lo
        hi = lo + 50.0 if hi is None else min(hi, lo + 1000.0)
        if tp is int:
            return st.integers(int(math.ceil(lo)), int(hi))
        return st.floats(lo, hi, exclude_min=True, exclude_max=True)
    return None


def _config_strategy(cls, clean: bool, depth: int = 0) -> st.SearchStrategy:
    """Dicts over ``cls``'s fields: ``clean`` ones draw documented values only, the others
    also None, wrong types, inf/nan, huge integers, numpy scalars, non-dict sections and
    an unknown key."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    optional = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested = _config_strategy(tp, clean, depth + 1)
            optional[f.name] = nested if clean else st.one_of(nested, _ANY)
            continue
        if f.name == "compile_fusion":  # compiling costs ~40 s a shape: checked on its own
            continue
        if f.name == "codec_params":
            params = st.sampled_from([{}, {"bits_per_value": 2}, {"range": [-3.0, 3.0]}, {"x": 1}])
            optional[f.name] = st.just({}) if clean else st.one_of(params, _ANY)
            continue
        valid = _valid_value(f.name, tp, f.metadata)
        if clean:
            if valid is not None:
                optional[f.name] = valid
            continue
        parts = [_ANY] + ([valid] if valid is not None else [])
        if f.name in _SIZES:
            parts = [st.sampled_from(_SIZES[f.name]), st.sampled_from([None, 2.5, "8", True])]
        optional[f.name] = st.one_of(*parts)
    if not clean:
        optional["unknown_key"] = _ANY
    return st.fixed_dictionaries({}, optional=optional)


def _dotted(cfg, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, dict):
            keys += _dotted(v, f"{prefix}{k}.")
    return keys


@pytest.mark.parametrize("env_id", list_envs())
def test_any_config_is_refused_at_the_door_or_runs(env_id):
    """Random config dicts (valid values, None, wrong types, inf/nan, huge integers, numpy
    scalars, non-dict sections, unknown keys): each is refused with a ValueError naming a
    key it set, at construction, or runs 3 steps with finite outputs."""
    outcomes = {"refused": 0, "ran": 0}
    cls = env_class(env_id).config_cls

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(config=st.one_of(_config_strategy(cls, True), _config_strategy(cls, False)))
    def check(config):
        try:
            world = agentcomm.make_vec(env_id, num_envs=2, seed=0, **config)
        except ValueError as err:
            msg = str(err)
            named = [k for k in _dotted(config) if re.search(rf"(?<![\w.]){re.escape(k)}\b", msg)]
            assert named, f"the message names no key of {config!r}: {err}"
            outcomes["refused"] += 1
            return
        _steps(world)
        outcomes["ran"] += 1

    check()
    # Both halves of the property were exercised.
    assert outcomes["refused"] >= 10 and outcomes["ran"] >= 10, outcomes


def test_world_reseed_refuses_a_float_seed():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=1)
    with pytest.raises(ValueError, match=r"seed=1\.5"):
        world.reset(seed=1.5)


def test_eval_names_a_damaged_policy_config(tmp_path):
    from agentcomm.policies.evaluate import load_actor

    (tmp_path / "config.json").write_text('{"kind": "gauss')
    with pytest.raises(ValueError, match="config.json"):
        load_actor(str(tmp_path))


def test_yaml_files_read_exponent_notation_as_numbers(tmp_path):
    # PyYAML follows YAML 1.1, where "1e-3" is a string; a config file that writes a
    # learning rate that way must get the number, not a type error.
    from agentcomm.experiments.study import load_experiment
    from agentcomm.policies.train import TrainConfig

    path = tmp_path / "train.yaml"
    path.write_text("algo: ppo\nppo:\n  lr: 1e-3\n")
    assert TrainConfig.load(path).ppo.lr == pytest.approx(1e-3)
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: x\nenv_id: SearchRescue-v0\noverrides: {comm: {cost_per_channel_use: 2e-2}}\n"
    )
    assert load_experiment(path).overrides["comm"]["cost_per_channel_use"] == pytest.approx(2e-2)
