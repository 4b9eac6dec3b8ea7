"""A batched RLlib EnvRunner that steps agentcomm's torch world directly.

Shape legend: ``B`` worlds per runner (``config.num_envs_per_env_runner``), ``N`` agents,
``S`` world steps per ``sample()`` call, ``Do`` observation dim, ``Ds`` state dim,
``Da = 6`` action dim.

Why a custom runner. RLlib's stock ``MultiAgentEnvRunner`` steps one ``MultiAgentEnv`` per
sub-env in Python, turning every ``[B, N, ...]`` tensor into per-agent dicts and back; for a
batched torch world that overhead dominates. This runner makes one ``world.step`` call on
``[B, N, 6]`` and one RLModule forward on the whole ``[B*N]`` batch per step, keeps the
rollout in ``[S, B*N, ...]`` tensors, and builds RLlib episodes only at the end of
``sample()``.

Which episodes. With parameter sharing (one module for every agent) each ``(world, agent)``
pair is emitted as its own ``SingleAgentEpisode``, and the algorithm runs as a
single-agent config (module ``"default_policy"``). This is what RLlib itself does with a
shared module: its learner pipeline splits every ``MultiAgentEpisode`` into one
``SingleAgentEpisode`` per agent before the GAE connector, batches them per module, and
bootstraps each agent's value from that agent's last observation. Emitting them directly
skips the ``MultiAgentEpisode`` bookkeeping (agent-to-module mapping, per-agent env-step
maps) without changing what the learner sees. Consequences:

* RLlib's "env steps" (``train_batch_size``, ``NUM_ENV_STEPS_SAMPLED``) count agent-steps;
  one world step is ``N`` of them. ``world_steps_sampled`` is logged beside it.
* ``episode_return_mean`` is the *team* return of one world episode (every agent gets
  the same team reward, so each agent's episode has that return; with the world's
  ``team_reward_weight < 1`` the agents' rewards differ and their mean is the team's).
* Per-agent modules need ``MultiAgentEpisode``s: use the stock ``MultiAgentEnvRunner``
  with the RLlib adapter (``agentcomm.envs.adapters``) for them.

Connector support: observations go to the module as they come from the world (already in
``[-1, 1]``), and the module's outputs are turned into actions the way RLlib's
``GetActions`` connector does (``Columns.ACTIONS`` if the module returns them, else a sample
of the action distribution and its log-probability). Custom env-to-module/module-to-env
connectors and stateful (recurrent) modules are rejected with a ``ValueError``.

Env settings come from ``config.env`` (``"agentcomm/<EnvId>"`` or ``"<EnvId>"``) and
``config.env_config``: scenario overrides plus the reserved keys ``"env_id"`` (optional,
must agree with ``config.env``),
``"centralized_critic"`` (bool; observations become ``Dict({"obs": [Do], "state":
[Ds]})`` with the world state repeated for every agent, the same layout as the RLlib
adapter) and ``"device"`` (``"cpu"``, ``"cuda"``, ``"cuda:<i>"`` or ``"auto"``: where the
world and the runner's module copy live).

Which worlds. The runner's worlds come from the ``train`` world-seed split
(:mod:`agentcomm.worlds`): with ``config.debugging(seed=s)`` runner ``i`` (RLlib's
``worker_index``; 0 for the local runner) first resets with ``world_seed("train", s, i)``
and continues that generator's stream afterwards: every training world comes from a
generator seeded in the ``train`` range, never from a selection or evaluation seed, and the
same seed replays the same worlds. Without a seed, the index is drawn at random (still
within ``train``). RLlib's evaluation runners (``in_evaluation``) draw from ``selection``
instead.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core import COMPONENT_RL_MODULE, DEFAULT_AGENT_ID, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES, INPUT_ENV_SPACES
from ray.rllib.env.env_runner import EnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import (
    EPISODE_LEN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
    SAMPLE_TIMER,
    WEIGHTS_SEQ_NO,
)

__all__ = [
    "BatchedCommEnvRunner",
    "CHANNEL_USES_PER_AGENT_STEP",
    "SUCCESS_RATE",
    "WORLD_STEPS_SAMPLED",
    "parse_env",
]

#: Metric: world steps (``B`` per batched step) sampled in the iteration.
WORLD_STEPS_SAMPLED = "world_steps_sampled"
#: Metric: fraction of world episodes that ended in success (windowed like the returns).
SUCCESS_RATE = "episode_success_rate"
#: Metric: mean complex channel uses per agent per step in the iteration.
CHANNEL_USES_PER_AGENT_STEP = "channel_uses_per_agent_step"


def parse_env(env: Any, env_config: dict[str, Any] | None) -> tuple[str, dict[str, Any], bool, str]:
    """Split an RLlib env spec into what the batched world needs, by the adapter's rule
    (:func:`agentcomm.envs.adapters.rllib.parse_env_config`).

    Args:
        env: ``"agentcomm/<EnvId>"`` or ``"<EnvId>"`` (a registered scenario id).
        env_config: Scenario overrides plus the reserved keys
            (:data:`~agentcomm.envs.adapters.rllib.ADAPTER_KEYS`); ``render_mode`` is
            accepted and unused (the batched runner does not render).

    Returns:
        ``(env_id, overrides, centralized_critic, device)``.
    """
    from agentcomm.envs.adapters.rllib import parse_env_config

    if env is None:
        raise ValueError(
            "env=None is not supported by BatchedCommEnvRunner; pass 'agentcomm/<EnvId>'"
        )
    spec = parse_env_config(env_config, env)
    return spec.env_id, spec.overrides, spec.centralized_critic, spec.device


def _to_numpy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    return x.detach().cpu().numpy()


def _index(x: Any, idx: Any) -> Any:
    if isinstance(x, dict):
        return {k: _index(v, idx) for k, v in x.items()}
    return x[idx]


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], dict):
        return {k: _stack([it[k] for it in items]) for k in items[0]}
    return torch.stack(items)


def _swap_time_batch(x: Any) -> Any:
    """``[S, M, ...] -> [M, S, ...]`` contiguous, for cheap per-episode slices."""
    if isinstance(x, dict):
        return {k: _swap_time_batch(v) for k, v in x.items()}
    return np.ascontiguousarray(np.swapaxes(x, 0, 1))


class BatchedCommEnvRunner(EnvRunner, Checkpointable):
    """Samples ``B`` agentcomm worlds x ``N`` agents as ``B*N`` single-agent episodes.

    Pass it with ``config.env_runners(env_runner_cls=BatchedCommEnvRunner,
    num_envs_per_env_runner=B)`` on a single-agent config (one shared module); see the
    module docstring for what is and is not supported.

    Args:
        config: The algorithm config.
        **kwargs: RLlib's runner arguments (``worker_index``, ``num_workers``, ``spaces``).
    """

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        if self.config.is_multi_agent:
            raise ValueError(
                "BatchedCommEnvRunner serves one module shared by all agents (a single-agent "
                "config); per-agent modules need the stock MultiAgentEnvRunner with the RLlib "
                "adapter of agentcomm.envs.adapters"
            )
        if (
            self.config._env_to_module_connector is not None
            or self.config._module_to_env_connector is not None
        ):
            raise ValueError(
                "BatchedCommEnvRunner does not run custom env-to-module/module-to-env "
                "connectors; remove them or use the stock runners"
            )
        self.env_id, self.overrides, self.centralized_critic, device = parse_env(
            self.config.env, self.config.env_config
        )
        self._device = torch.device(device)
        self.num_worlds = int(self.config.num_envs_per_env_runner)
        self.world: Any = None
        self.module: Any = None
        self._weights_seq_no = 0
        self._uid = uuid.uuid4().hex[:8]
        self.make_env()
        self.make_module()

    # ------------------------------------------------------------------ construction
    def make_env(self) -> None:
        """Build the batched world and the per-agent spaces."""
        import agentcomm
        from agentcomm.worlds import MAX_SEED, world_seed

        # Not RLlib's per-runner ``self._seed`` (config seed + worker index, which makes
        # seed s's runner 1 and seed s + 1's runner 0 share a world): the (seed, runner)
        # pair indexes the split instead.
        index = self.config.seed
        if index is None:
            index = int(torch.randint(MAX_SEED, ()).item())
        split = "selection" if self.config.in_evaluation else "train"
        seed = world_seed(split, int(index), int(self.worker_index or 0))
        self.world = agentcomm.make_vec(
            self.env_id, num_envs=self.num_worlds, device=self._device, seed=seed, **self.overrides
        )
        self._world_seed = seed
        self._seeded = False
        self.num_agents = self.world.num_agents
        self.num_envs = self.num_worlds * self.num_agents
        obs_box = gym.spaces.Box(-1.0, 1.0, (self.world.obs_dim,), np.float32)
        if self.centralized_critic:
            state_box = gym.spaces.Box(-1.0, 1.0, (self.world.state_dim,), np.float32)
            self.observation_space: gym.Space = gym.spaces.Dict(
                {"obs": obs_box, "state": state_box}
            )
        else:
            self.observation_space = obs_box
        self.action_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
        self._needs_reset = True

    def make_module(self) -> None:
        """Build the inference-only module copy on the world's device."""
        spec = self.config.get_rl_module_spec(spaces=self.get_spaces(), inference_only=True)
        self.module = spec.build().to(self._device)
        if self.module.is_stateful():
            raise ValueError("BatchedCommEnvRunner does not support stateful (recurrent) modules")

    # ------------------------------------------------------------------ RLlib API
    def assert_healthy(self) -> None:
        assert self.world is not None and self.module is not None

    def get_spaces(self) -> dict[str, tuple[gym.Space, gym.Space]]:
        batched = (
            gym.vector.utils.batch_space(self.observation_space, self.num_envs),
            gym.vector.utils.batch_space(self.action_space, self.num_envs),
        )
        single = (self.observation_space, self.action_space)
        return {
            INPUT_ENV_SPACES: batched,
            INPUT_ENV_SINGLE_SPACES: single,
            DEFAULT_MODULE_ID: single,
        }

    def default_world_steps(self) -> int:
        """World steps per ``sample()`` without arguments.

        ``rollout_fragment_length="auto"``: enough for this runner's share of
        ``total_train_batch_size`` agent-steps, ``ceil(total / (runners * B * N))``; an int
        is the number of steps per sub-env, i.e. world steps.
        """
        frag = self.config.rollout_fragment_length
        if frag == "auto":
            per_runner = self.config.total_train_batch_size / max(1, self.config.num_env_runners)
            return max(1, math.ceil(per_runner / self.num_envs))
        return int(frag)

    def sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool | None = None,
        random_actions: bool = False,
        force_reset: bool = False,
        **kwargs: Any,
    ) -> list[SingleAgentEpisode]:
        """Step all worlds and return the sampled episode chunks.

        Args:
            num_timesteps: Agent-steps to collect; ``ceil(num_timesteps / (B*N))`` world
                steps are run, so exactly that many world steps times ``B*N`` agent-steps
                come back. Ongoing episodes are cut and continued by the next call.
            num_episodes: Per-agent episodes to complete (a world episode completes ``N``);
                starts from fresh worlds and returns completed episodes only.
            explore: ``forward_exploration`` (True) or ``forward_inference`` (False);
                ``None`` uses ``config.explore``.
            random_actions: Uniform random actions instead of the module.
            force_reset: Reset every world before sampling.

        Returns:
            ``SingleAgentEpisode``s (numpy), one per ``(world, agent)`` and episode chunk.
        """
        if num_timesteps is not None and num_episodes is not None:
            raise ValueError("pass num_timesteps or num_episodes, not both")
        explore = self.config.explore if explore is None else explore
        if num_timesteps is None and num_episodes is None:
            if self.config.batch_mode == "truncate_episodes":
                num_timesteps = self.default_world_steps() * self.num_envs
            else:
                num_episodes = self.num_envs
        with self.metrics.log_time(SAMPLE_TIMER):
            if num_episodes is not None:
                return self._rollout(None, int(num_episodes), explore, random_actions, True)
            steps = max(1, math.ceil(int(num_timesteps) / self.num_envs))
            return self._rollout(steps, None, explore, random_actions, force_reset)

    def get_metrics(self) -> dict[str, Any]:
        return self.metrics.reduce()

    def get_state(
        self,
        components: str | Collection[str] | None = None,
        *,
        not_components: str | Collection[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.num_env_steps_sampled_lifetime
        }
        if self._check_component(COMPONENT_RL_MODULE, components, not_components):
            state[COMPONENT_RL_MODULE] = self.module.get_state(
                components=self._get_subcomponents(COMPONENT_RL_MODULE, components),
                not_components=self._get_subcomponents(COMPONENT_RL_MODULE, not_components),
                **kwargs,
            )
            state[WEIGHTS_SEQ_NO] = self._weights_seq_no
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        import ray

        if COMPONENT_RL_MODULE in state:
            # Same rule as RLlib's runners: seq no 0 forces the update; else only newer.
            seq = state.get(WEIGHTS_SEQ_NO, 0)
            if seq == 0 or self._weights_seq_no < seq:
                module_state = state[COMPONENT_RL_MODULE]
                if isinstance(module_state, ray.ObjectRef):
                    module_state = ray.get(module_state)
                if isinstance(module_state, dict) and DEFAULT_MODULE_ID in module_state:
                    module_state = module_state[DEFAULT_MODULE_ID]
                self.module.set_state(module_state)
            if seq > 0:
                self._weights_seq_no = seq
        if NUM_ENV_STEPS_SAMPLED_LIFETIME in state:
            self.num_env_steps_sampled_lifetime = state[NUM_ENV_STEPS_SAMPLED_LIFETIME]

    def get_ctor_args_and_kwargs(self) -> tuple[tuple, dict[str, Any]]:
        return (), {"config": self.config}

    def get_checkpointable_components(self) -> list[tuple[str, Any]]:
        return [(COMPONENT_RL_MODULE, self.module)]

    # ------------------------------------------------------------------ rollout
    def _observe(self, obs: torch.Tensor) -> Any:
        """World observations ``[B, N, Do]`` -> module input ``[B*N, Do]`` (or a Dict)."""
        flat = obs.reshape(self.num_envs, -1)
        if not self.centralized_critic:
            return flat
        state = self.world.state().float()
        state = state.unsqueeze(1).expand(-1, self.num_agents, -1).reshape(self.num_envs, -1)
        return {"obs": flat, "state": state}

    def _reset_all(self) -> None:
        # Seed only the first reset; later resets continue the world's generator stream.
        obs = self.world.reset(seed=None if self._seeded else self._world_seed)
        self._seeded = True
        self._obs = self._observe(obs)
        self._ep_ids = [uuid.uuid4().hex for _ in range(self.num_envs)]
        self._t_started = np.zeros(self.num_envs, dtype=np.int64)
        self._running_return = torch.zeros(self.num_worlds, device=self._device)
        self._running_len = torch.zeros(self.num_worlds, dtype=torch.long, device=self._device)
        self._needs_reset = False

    def _act(self, obs: Any, explore: bool, random_actions: bool) -> tuple[torch.Tensor, dict]:
        """Actions ``[B*N, Da]`` (unclipped, as stored) and the module's extra outputs."""
        if random_actions:
            from agentcomm.envs.experts import random_actions as uniform

            return uniform(self.world).reshape(self.num_envs, -1), {}
        batch = {Columns.OBS: obs}
        with torch.no_grad():
            if explore:
                out = dict(self.module.forward_exploration(batch))
            else:
                out = dict(self.module.forward_inference(batch))
            if Columns.ACTIONS not in out:
                # RLlib's GetActions connector: sample the module's action distribution.
                cls = (
                    self.module.get_exploration_action_dist_cls()
                    if explore
                    else self.module.get_inference_action_dist_cls()
                )
                dist = cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
                if not explore:
                    dist = dist.to_deterministic()
                out[Columns.ACTIONS] = dist.sample()
                if Columns.ACTION_LOGP not in out:
                    out[Columns.ACTION_LOGP] = dist.logp(out[Columns.ACTIONS])
        actions = out.pop(Columns.ACTIONS)
        out.pop(Columns.ACTIONS_FOR_ENV, None)
        return actions, out

    def _rollout(
        self,
        steps: int | None,
        episodes: int | None,
        explore: bool,
        random_actions: bool,
        force_reset: bool,
    ) -> list[SingleAgentEpisode]:
        if force_reset or self._needs_reset:
            self._reset_all()
        b, n = self.num_worlds, self.num_agents
        obs_l, next_l, act_l, rew_l, term_l, trunc_l = [], [], [], [], [], []
        extra_l: dict[str, list[torch.Tensor]] = {}
        finished_returns: list[torch.Tensor] = []
        finished_lens: list[torch.Tensor] = []
        finished_success: list[torch.Tensor] = []
        channel_uses = torch.zeros((), device=self._device)
        completed = 0
        obs = self._obs
        while (completed < episodes) if steps is None else (len(obs_l) < steps):
            actions, extra = self._act(obs, explore, random_actions)
            env_actions = actions.clamp(-1.0, 1.0).reshape(b, n, -1)
            next_obs, reward, terminated, truncated, info = self.world.step(env_actions)
            obs_l.append(obs)
            act_l.append(actions)
            rew_l.append(reward.reshape(-1))
            term_l.append(terminated)
            trunc_l.append(truncated)
            for key, value in extra.items():
                extra_l.setdefault(key, []).append(value)
            channel_uses = channel_uses + info["channel_uses"].sum()
            # The agents' mean reward is the team reward, also under team_reward_weight < 1.
            self._running_return += reward.mean(1)
            self._running_len += 1
            done = terminated | truncated
            if bool(done.any()):
                finished_returns.append(self._running_return[done])
                finished_lens.append(self._running_len[done])
                finished_success.append(info["success"][done])
                completed += int(done.sum()) * n
                # The pre-reset observation closes the episode (the value bootstrap of a
                # time-limit truncation reads it); the reset one opens the next.
                next_l.append(self._observe(next_obs))
                self._running_return = torch.where(done, 0.0, self._running_return)
                self._running_len = torch.where(done, 0, self._running_len)
                self.world.reset_at(done)
                obs = self._observe(self.world.observation())
            else:
                obs = self._observe(next_obs)
                next_l.append(obs)
        self._obs = obs
        num_steps = len(obs_l)
        result = self._build_episodes(
            _to_numpy(_stack(obs_l)),
            _to_numpy(_stack(next_l)),
            _to_numpy(torch.stack(act_l)),
            _to_numpy(torch.stack(rew_l)),
            _to_numpy(torch.stack(term_l)),
            _to_numpy(torch.stack(trunc_l)),
            {k: _to_numpy(torch.stack(v)) for k, v in extra_l.items()},
            keep_ongoing=steps is not None,
        )
        if steps is None:
            # Episode mode returns only completed episodes; the next call starts afresh.
            self._needs_reset = True
        agent_steps = num_steps * self.num_envs
        self._log_sampled(
            agent_steps,
            num_steps * b,
            float(channel_uses) / max(agent_steps, 1),
            finished_returns,
            finished_lens,
            finished_success,
            sum(ep.is_done for ep in result),
        )
        return result

    def _build_episodes(
        self,
        obs: Any,
        next_obs: Any,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        extra: dict[str, np.ndarray],
        keep_ongoing: bool,
    ) -> list[SingleAgentEpisode]:
        """Cut the ``[S, B*N, ...]`` rollout into one episode chunk per agent and segment.

        RLlib's learner consumes episode objects, so this is the one place with a Python
        loop over ``(world, agent)`` pairs; it runs once per ``sample()``, not per step.
        """
        n = self.num_agents
        obs, next_obs = _swap_time_batch(obs), _swap_time_batch(next_obs)
        actions, rewards = _swap_time_batch(actions), _swap_time_batch(rewards)
        extra = {k: _swap_time_batch(v) for k, v in extra.items()}
        done = terminated | truncated  # [S, B]
        num_steps = done.shape[0]
        out: list[SingleAgentEpisode] = []
        new_ids = list(self._ep_ids)
        new_t0 = self._t_started.copy()
        for w in range(self.num_worlds):
            ends = np.flatnonzero(done[:, w]).tolist()
            bounds = [(s0, s1) for s0, s1 in zip([0] + [e + 1 for e in ends], ends)]
            tail = (ends[-1] + 1) if ends else 0
            if keep_ongoing and tail < num_steps:
                bounds.append((tail, num_steps - 1))
            for a in range(n):
                i = w * n + a
                ep_id, t0 = self._ep_ids[i], int(self._t_started[i])
                for s0, s1 in bounds:
                    ended = bool(done[s1, w])
                    out.append(
                        self._episode(
                            ep_id,
                            t0,
                            _index(obs, (i, slice(s0, s1 + 1))),
                            _index(next_obs, (i, slice(s1, s1 + 1))),
                            actions[i, s0 : s1 + 1],
                            rewards[i, s0 : s1 + 1],
                            {k: v[i, s0 : s1 + 1] for k, v in extra.items()},
                            bool(terminated[s1, w]),
                            bool(truncated[s1, w]),
                        )
                    )
                    if ended:
                        ep_id, t0 = uuid.uuid4().hex, 0
                    else:
                        t0 += s1 + 1 - s0
                if not keep_ongoing or tail == num_steps:
                    t0 = 0
                new_ids[i], new_t0[i] = ep_id, t0
        self._ep_ids, self._t_started = new_ids, new_t0
        return out

    def _episode(
        self,
        ep_id: str,
        t_started: int,
        obs: Any,
        last_obs: Any,
        actions: np.ndarray,
        rewards: np.ndarray,
        extra: dict[str, np.ndarray],
        terminated: bool,
        truncated: bool,
    ) -> SingleAgentEpisode:
        if isinstance(obs, dict):
            all_obs = {k: np.concatenate([obs[k], last_obs[k]]) for k in obs}
        else:
            all_obs = np.concatenate([obs, last_obs])
        length = len(rewards)
        return SingleAgentEpisode(
            id_=ep_id,
            observations=InfiniteLookbackBuffer(all_obs, 0, self.observation_space),
            observation_space=self.observation_space,
            infos=[{} for _ in range(length + 1)],
            actions=InfiniteLookbackBuffer(actions, 0, self.action_space),
            action_space=self.action_space,
            rewards=InfiniteLookbackBuffer(rewards.astype(np.float32), 0),
            extra_model_outputs={k: InfiniteLookbackBuffer(v, 0) for k, v in extra.items()},
            terminated=terminated,
            truncated=truncated,
            t_started=t_started,
            len_lookback_buffer=0,
        )

    def _log_sampled(
        self,
        agent_steps: int,
        world_steps: int,
        uses_per_agent_step: float,
        returns: list[torch.Tensor],
        lens: list[torch.Tensor],
        success: list[torch.Tensor],
        num_done: int,
    ) -> None:
        m = self.metrics
        m.log_value(NUM_ENV_STEPS_SAMPLED, agent_steps, reduce="sum")
        m.log_value((NUM_AGENT_STEPS_SAMPLED, DEFAULT_AGENT_ID), agent_steps, reduce="sum")
        m.log_value((NUM_MODULE_STEPS_SAMPLED, DEFAULT_MODULE_ID), agent_steps, reduce="sum")
        m.log_value(NUM_EPISODES, num_done, reduce="sum")
        m.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME, agent_steps, reduce="lifetime_sum", with_throughput=True
        )
        m.log_value(
            (NUM_AGENT_STEPS_SAMPLED_LIFETIME, DEFAULT_AGENT_ID), agent_steps, reduce="lifetime_sum"
        )
        m.log_value(
            (NUM_MODULE_STEPS_SAMPLED_LIFETIME, DEFAULT_MODULE_ID),
            agent_steps,
            reduce="lifetime_sum",
        )
        m.log_value(NUM_EPISODES_LIFETIME, num_done, reduce="lifetime_sum")
        m.log_value(WORLD_STEPS_SAMPLED, world_steps, reduce="sum")
        m.log_value(CHANNEL_USES_PER_AGENT_STEP, uses_per_agent_step, window=1)
        self.num_env_steps_sampled_lifetime += agent_steps
        if not returns:
            return
        win = max(
            1,
            math.ceil(
                self.config.metrics_num_episodes_for_smoothing / (self.config.num_env_runners or 1)
            ),
        )
        for r, length, ok in zip(
            torch.cat(returns).tolist(), torch.cat(lens).tolist(), torch.cat(success).tolist()
        ):
            m.log_value(EPISODE_RETURN_MEAN, r, window=win)
            m.log_value(EPISODE_LEN_MEAN, length, window=win)
            m.log_value(SUCCESS_RATE, float(ok), window=win)
            m.log_value(EPISODE_RETURN_MIN, r, reduce="min", window=win)
            m.log_value(EPISODE_RETURN_MAX, r, reduce="max", window=win)
