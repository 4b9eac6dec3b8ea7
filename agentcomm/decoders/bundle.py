r"""A trained set of learned receivers on disk: one prior, JSCC models at several budgets.

A JSCC model sends a fixed number ``k`` of complex symbols, so one model serves
one budget. A *bundle* holds a model per ``k`` (e.g. 16, 32 and 64 channel
uses), the diffusion prior they share, each model's CDDM calibration table and
the DiffCom guidance step ``zeta`` chosen on validation data and, optionally, a
few-step rectified-flow prior (:mod:`agentcomm.decoders.flow`) for the ``jscc+flow``
receiver, so that loading needs neither data nor recalibration. Budget rule
(:meth:`DecoderBundle.select_channel_uses`): a message with budget ``b`` uses
the largest ``k <= b``; below the smallest ``k`` nothing is sent.

Layout of a bundle folder (written by :meth:`DecoderBundle.save`, by
``agentcomm train-decoder``)::

    bundle.json          grid, clip, the k values, receiver settings, training config,
                         the SHA-256 of each cddm.safetensors (calibration_sha256)
    prior/               model.safetensors + config.json   (DiffusionPrior)
    flow/                model.safetensors + config.json   (FlowPrior; optional)
    k16/                 model.safetensors + config.json   (JSCC, channel_uses=16)
                         cddm.safetensors                  (CDDM calibration table)
    k32/ ...

Shipped bundles live in ``agentcomm/models/decoders/<name>/`` (package data);
:func:`default_bundle_dir` picks the one for a grid shape.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch

from agentcomm._checks import check_range, check_tensor
from agentcomm._integrity import check_sha256, read_json_file, sha256_file
from agentcomm.decoders.cddm import CALIBRATION_FILE, CDDMReceiver
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.flow import MAX_STEPS, FlowConfig, FlowPrior, FlowReceiver
from agentcomm.decoders.jscc import JSCC, JSCCConfig, load_checkpoint, save_checkpoint
from agentcomm.decoders.prior import DiffusionPrior, PriorConfig
from agentcomm.io import atomic_write_text

__all__ = [
    "BUNDLE_FILE",
    "DecoderBundle",
    "default_bundle_dir",
    "largest_fitting",
    "load_bundle",
    "shipped_bundles",
]

BUNDLE_FILE = "bundle.json"
_FORMAT = 1


def largest_fitting(channel_uses: tuple[int, ...], budget: torch.Tensor) -> torch.Tensor:
    """The budget rule: each message uses the largest ``k <= budget`` among ``channel_uses``.

    Args:
        channel_uses: the available model sizes ``k`` (positive ints).
        budget: int ``[M]`` channel uses granted.
    Returns:
        int64 ``[M]``, each one of ``channel_uses`` or 0 (nothing fits: not sent).
    """
    check_tensor("budget", budget, ndim=1)
    ks = torch.tensor((0, *sorted(channel_uses)), dtype=torch.int64, device=budget.device)
    fits = (budget.to(torch.int64).unsqueeze(1) >= ks.unsqueeze(0)).sum(1) - 1
    return ks[fits.clamp_min(0)]


@dataclass
class DecoderBundle:
    """JSCC models at several budgets, their shared prior and receiver settings.

    Attributes:
        prior: the diffusion prior over the maps.
        jscc: ``{k: JSCC}``, one trained model per channel-use count ``k``.
        cddm: ``{k: CDDMReceiver}``, calibrated on validation data.
        zeta: ``{k: float}``, the DiffCom guidance step chosen on validation data.
        diffcom_steps: DDIM steps of the DiffCom receiver.
        flow: the rectified-flow prior of the ``jscc+flow`` receiver (``None``: none).
        flow_steps: Euler steps of the ``jscc+flow`` receiver.
        info: free-form provenance (environment, training config, validation figures),
            saved into ``bundle.json``.
    """

    prior: DiffusionPrior
    jscc: dict[int, JSCC]
    cddm: dict[int, CDDMReceiver]
    zeta: dict[int, float]
    diffcom_steps: int = 10
    flow: FlowPrior | None = None
    flow_steps: int = 2
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.jscc:
            raise ValueError("jscc is empty: a bundle needs at least one JSCC model")
        for name, table in (("cddm", self.cddm), ("zeta", self.zeta)):
            if set(table) != set(self.jscc):
                raise ValueError(
                    f"{name} has keys {sorted(table)}; expected the jscc keys {sorted(self.jscc)}"
                )
        if self.flow is not None:
            for key in ("height", "width", "clip"):
                fv, pv = getattr(self.flow.config, key), getattr(self.prior.config, key)
                if fv != pv:
                    raise ValueError(
                        f"flow.config.{key}={fv!r} differs from prior.config.{key}={pv!r}; "
                        "the flow and the prior must describe the same maps"
                    )
            check_range("flow_steps", self.flow_steps, 1, MAX_STEPS)
        for k, model in self.jscc.items():
            if model.config.channel_uses != k:
                raise ValueError(
                    f"jscc[{k}] has channel_uses={model.config.channel_uses}; keys must match"
                )

    @property
    def channel_uses(self) -> tuple[int, ...]:
        """The ``k`` values, increasing."""
        return tuple(sorted(self.jscc))

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the maps."""
        c = self.prior.config
        return (c.height, c.width)

    def select_channel_uses(self, budget: torch.Tensor) -> torch.Tensor:
        """int64 ``[M]``: per message the largest ``k <= budget`` of :attr:`channel_uses`, else 0."""
        return largest_fitting(self.channel_uses, budget)

    def diffcom(self, k: int, steps: int | None = None, zeta: float | None = None):
        """The DiffCom receiver for ``k``, started from the CDDM estimate (deterministic)."""
        return DiffComReceiver(
            self.jscc[k],
            self.prior,
            steps=self.diffcom_steps if steps is None else steps,
            zeta=self.zeta[k] if zeta is None else zeta,
            start=self.cddm[k],
        )

    def flow_receiver(self, k: int, steps: int | None = None) -> FlowReceiver:
        """The ``jscc+flow`` receiver for ``k``, on the CDDM calibration table of ``jscc[k]``.

        Raises:
            ValueError: the bundle holds no flow prior.
        """
        if self.flow is None:
            raise ValueError(
                "this decoder bundle holds no flow prior (no flow/ folder); train one with "
                "`python experiments/recipes/train_decoders.py` (flow_steps > 0)"
            )
        return FlowReceiver.from_cddm(
            self.cddm[k], self.flow, self.flow_steps if steps is None else steps
        )

    def save(
        self, directory: str | os.PathLike[str], dtype: Literal["float32", "float16"] = "float32"
    ) -> Path:
        """Write the bundle (layout in the module docstring); ``dtype`` as in :func:`save_checkpoint`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.prior, out / "prior", dtype=dtype)
        if self.flow is not None:
            save_checkpoint(self.flow, out / "flow", dtype=dtype)
        for k, model in self.jscc.items():
            save_checkpoint(model, out / f"k{k}", dtype=dtype)
            self.cddm[k].save_calibration(out / f"k{k}")
        c = self.prior.config
        doc = {
            "format": _FORMAT,
            "height": c.height,
            "width": c.width,
            "clip": c.clip,
            "channel_uses": list(self.channel_uses),
            "calibration_sha256": {
                str(k): sha256_file(out / f"k{k}" / CALIBRATION_FILE) for k in self.jscc
            },
            "cddm_steps": {str(k): r.steps for k, r in self.cddm.items()},
            "diffcom_zeta": {str(k): z for k, z in self.zeta.items()},
            "diffcom_steps": self.diffcom_steps,
            "flow_steps": self.flow_steps if self.flow is not None else None,
            "info": self.info,
        }
        atomic_write_text(out / BUNDLE_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return out


def load_bundle(directory: str | os.PathLike[str] | resources.abc.Traversable) -> DecoderBundle:
    """Read a bundle written by :meth:`DecoderBundle.save`.

    Raises:
        ValueError: no ``bundle.json``, a damaged file (named in the message: each model's
            weights are checked against the SHA-256 in its ``config.json`` by
            :func:`load_checkpoint`, each calibration table against ``bundle.json``),
            another format version, or parts that disagree.
    """
    src = Path(str(directory))
    meta_path = src / BUNDLE_FILE
    if not meta_path.is_file():
        raise ValueError(
            f"checkpoint={str(src)!r} holds no {BUNDLE_FILE}; pass a folder written by "
            "`agentcomm train-decoder` (DecoderBundle.save)"
        )
    doc = read_json_file(meta_path, "decoder bundle")
    if doc.get("format") != _FORMAT:
        raise ValueError(f"{meta_path} has format {doc.get('format')!r}; expected {_FORMAT}")
    prior = load_checkpoint(DiffusionPrior, PriorConfig, src / "prior")
    flow = None
    if (src / "flow").is_dir():
        flow = load_checkpoint(FlowPrior, FlowConfig, src / "flow")
    jscc, cddm, zeta = {}, {}, {}
    hashes = doc.get("calibration_sha256")
    if not isinstance(hashes, dict):
        raise ValueError(
            f"{meta_path} records no calibration_sha256, so the cddm tables cannot be checked; "
            "save the bundle again with this version"
        )
    for k in doc["channel_uses"]:
        model = load_checkpoint(JSCC, JSCCConfig, src / f"k{k}")
        table = src / f"k{k}" / CALIBRATION_FILE
        key = f"calibration_sha256.{k}"
        check_sha256(table, meta_path, {key: hashes.get(str(k))}, key=key)
        jscc[k] = model
        cddm[k] = CDDMReceiver.from_calibration(model, prior, src / f"k{k}")
        zeta[k] = float(doc["diffcom_zeta"][str(k)])
    return DecoderBundle(
        prior=prior,
        jscc=jscc,
        cddm=cddm,
        zeta=zeta,
        diffcom_steps=int(doc["diffcom_steps"]),
        flow=flow,
        flow_steps=int(doc.get("flow_steps") or 2),
        info=doc.get("info", {}),
    )


def shipped_bundles() -> dict[str, Path]:
    """``{name: folder}`` of the bundles shipped in ``agentcomm/models/decoders/``."""
    root = resources.files("agentcomm").joinpath("models", "decoders")
    if not root.is_dir():
        return {}
    return {
        d.name: Path(str(d))
        for d in sorted(root.iterdir(), key=lambda d: d.name)
        if d.is_dir() and d.joinpath(BUNDLE_FILE).is_file()
    }


def default_bundle_dir(grid_shape: tuple[int, ...]) -> Path:
    """The shipped bundle for maps of ``grid_shape = (H, W)``.

    Raises:
        ValueError: no shipped bundle has that grid (the message lists the shipped ones).
    """
    found = {}
    for name, path in shipped_bundles().items():
        doc = read_json_file(path / BUNDLE_FILE, "decoder bundle")
        found[name] = (doc["height"], doc["width"])
        if tuple(grid_shape) == found[name]:
            return path
    raise ValueError(
        f"no shipped decoder model for source_shape={tuple(grid_shape)}; shipped: {found}. "
        "Train one with `agentcomm train-decoder` and pass checkpoint=DIR"
    )
