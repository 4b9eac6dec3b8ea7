"""Train the decoder bundle shipped in ``agentcomm/models/decoders/searchrescue-16x16``.

The shipped models are exactly what this script writes (the config is below
and is saved beside them as ``train_config.yaml``). The training maps are what the
codecs see on the air: every message's map (own evidence, fused beliefs, the fusion
centre's map) at every step of SearchRescue-v0 episodes under the expert and the shipped
BC and DPPO policies, in each coordination mode, with the budget cap drawn per episode
from 16, 38 and 64 channel uses (validation: the same on another seed)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/recipes/train_decoders.py \\
        --out agentcomm/models/decoders/searchrescue-16x16

which is the same as ``agentcomm train-decoder --config <SHIPPED saved as YAML> --out ...``.
``--clear-reach`` trains the same bundle on maps of SearchRescue-v0 with ``clear_reach``
(each agent clears the cells within its rescue reach), e.g. ``--out runs/decoders-cr``.
On one CPU thread it takes about 5-10 minutes; pass ``--num-workers``/``--use-gpu``
to run it on Ray Train workers elsewhere. ``--dump-config FILE`` writes the config
only. The Ray run records are not kept; the bundle is float16 (under 5 MB in all).
"""

from __future__ import annotations

import argparse

from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.receiver_training import DecoderTrainConfig, train_decoders

#: The config of the shipped bundle.
SHIPPED = DecoderTrainConfig(
    env_id="SearchRescue-v0",
    num_envs=64,
    rollout_steps=40,
    val_rollout_steps=8,
    data_source="payloads",
    data_actors=("expert", "shipped:searchrescue-bc", "shipped:searchrescue-dppo"),
    data_modes=("distributed", "centralized", "hybrid"),
    data_budget_levels=(16, 38, 64),
    seed=0,
    channel_uses=(16, 32, 64),
    train_channel="rayleigh_block",
    snr_low_db=-5.0,
    snr_high_db=25.0,
    jscc_hidden=256,
    jscc_depth=2,
    jscc_steps=2500,
    prior_hidden=384,
    prior_depth=4,
    prior_steps=4000,
    flow_hidden=128,
    flow_depth=3,
    flow_steps=3000,
    flow_sample_steps=2,
    cddm_steps=5,
    diffcom_steps=10,
    zeta_grid=(0.0, 0.02, 0.05, 0.1, 0.2, 0.5),
    zeta_snr_db=(0.0, 5.0),
    storage_dtype="float16",
    log_every=500,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="agentcomm/models/decoders/searchrescue-16x16")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--dump-config", help="write the config to this YAML/JSON file and exit")
    parser.add_argument(
        "--clear-reach",
        action="store_true",
        help="train on SearchRescue with clear_reach (not the shipped bundle; --out elsewhere)",
    )
    args = parser.parse_args()
    use_one_thread(override=False)
    cfg = SHIPPED.replace(num_workers=args.num_workers, use_gpu=args.use_gpu)
    if args.clear_reach:
        cfg = cfg.replace(env_overrides={"clear_reach": True})
    if args.dump_config:
        cfg.save(args.dump_config)
        return
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2)
    try:
        out = train_decoders(cfg, args.out)
    finally:
        ray.shutdown()
    for name in ("losses.csv", "losses.png"):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
