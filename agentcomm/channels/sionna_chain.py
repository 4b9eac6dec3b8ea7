r"""A real digital link: 5G NR LDPC + QAM from Sionna over agentcomm's channels.

Bits are LDPC-encoded and QAM-mapped by Sionna (PyTorch backend), the symbols
pass through an agentcomm :class:`~agentcomm.channels.base.Channel` (so fading,
CSI and the noise convention -- :math:`\mathcal{CN}(0, N_0)`, :math:`N_0/2` per real
dimension -- are exactly those of the analog path), and the receiver equalizes with
its CSI, demaps to LLRs with the effective noise variance and runs belief
propagation (3GPP TS 38.212 codes; Sionna: Hoydis et al., arXiv:2203.11854).

Requires the optional dependency: ``pip install agentcomm[sionna]``.

Reproducibility: every random draw of :meth:`LDPCQAMChain.transmit` (fading,
noise, CSI error) comes from the ``generator`` passed in; the Sionna blocks used
here (encoder, mapper, demapper, decoder) are deterministic and never touch
Sionna's own RNG, so the same generator seed gives bit-identical results on CPU.
Importing Sionna re-seeds torch's *global* default generator (its config does so
on import); :func:`_import_sionna` saves and restores the global CPU (and CUDA)
RNG state around the import so that callers who rely on ``torch.manual_seed`` are
unaffected.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Literal, NamedTuple

import torch

from agentcomm._checks import check_choice, check_finite, check_range, check_tensor
from agentcomm.channels.base import Channel, equalize

__all__ = ["ChainOutput", "LDPCQAMChain"]

_SIONNA: SimpleNamespace | None = None

#: Highest code rate of the 5G NR LDPC rate matching (TS 38.212 sec. 5.4.2.1).
MAX_CODE_RATE = 948 / 1024


def _import_sionna() -> SimpleNamespace:
    """Import the Sionna blocks once, leaving torch's global RNG state as it was."""
    global _SIONNA
    if _SIONNA is None:
        cpu_state = torch.random.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
            from sionna.phy.mapping import Demapper, Mapper
        except ImportError as err:
            raise ImportError(
                "LDPCQAMChain needs Sionna (sionna-no-rt): pip install agentcomm[sionna]"
            ) from err
        finally:
            torch.random.set_rng_state(cpu_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
        _SIONNA = SimpleNamespace(
            LDPC5GEncoder=LDPC5GEncoder,
            LDPC5GDecoder=LDPC5GDecoder,
            Mapper=Mapper,
            Demapper=Demapper,
        )
    return _SIONNA


class ChainOutput(NamedTuple):
    """Result of :meth:`LDPCQAMChain.transmit` (unpacks as a 4-tuple).

    Attributes:
        bits_hat: decoded information bits ``[..., k_info]``, dtype of the input bits.
        bit_errors: int64 ``[...]``: wrong information bits per block.
        block_delivered: bool ``[...]``: the block decoded without a single bit error
            (a genie check, standing in for the CRC a real receiver would use).
        channel_uses: complex channel uses per block, ``n_coded / bits_per_symbol``.
    """

    bits_hat: torch.Tensor
    bit_errors: torch.Tensor
    block_delivered: torch.Tensor
    channel_uses: int


class LDPCQAMChain:
    r"""5G LDPC code + Gray-labelled QAM, transmitted over an agentcomm channel.

    Rate: :math:`k_{info}` bits in :math:`n_{coded}/m` complex channel uses
    (:math:`m` = ``bits_per_symbol``), i.e. :math:`k_{info}\,m/n_{coded}` bits per channel use.
    The SNR given to :meth:`transmit` is :math:`E_s/N_0` per QAM symbol (unit-energy
    constellation); :math:`E_b/N_0 = E_s/N_0 - 10\log_{10}(m\,k_{info}/n_{coded})` dB.

    Args:
        k_info: information bits per block, 12 <= k_info <= 8448 (5G NR limits).
        n_coded: coded bits per block, a multiple of ``bits_per_symbol``, with
            ``k_info / n_coded <= 948/1024``.
        bits_per_symbol: bits per QAM symbol: 2 (QPSK), 4 (16-QAM), 6, 8 or 10.
        num_iter: belief-propagation iterations (no early stopping).
        demapping: ``"app"`` (exact LLRs) or ``"maxlog"``.
        device: device of the Sionna blocks and of the tensors passed to :meth:`transmit`.
    Raises:
        ImportError: Sionna is not installed.
    """

    def __init__(
        self,
        k_info: int,
        n_coded: int,
        bits_per_symbol: int,
        *,
        num_iter: int = 20,
        demapping: Literal["app", "maxlog"] = "app",
        device: str = "cpu",
    ) -> None:
        for name, value in (("k_info", k_info), ("n_coded", n_coded)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r} must be an int")
        self.k_info = int(check_range("k_info", k_info, 12, 8448))
        if bits_per_symbol not in (2, 4, 6, 8, 10):
            raise ValueError(
                f"bits_per_symbol={bits_per_symbol!r} is not allowed; choose 2, 4, 6, 8 or 10"
            )
        self.bits_per_symbol = int(bits_per_symbol)
        if n_coded % self.bits_per_symbol != 0:
            raise ValueError(
                f"n_coded={n_coded} must be a multiple of bits_per_symbol={bits_per_symbol}"
            )
        if not k_info / MAX_CODE_RATE <= n_coded <= 316 * 384:
            raise ValueError(
                f"n_coded={n_coded} is out of range for k_info={k_info}; allowed "
                f"[{math.ceil(k_info / MAX_CODE_RATE)}, {316 * 384}] (code rate <= 948/1024)"
            )
        self.n_coded = int(n_coded)
        self.num_iter = int(check_range("num_iter", num_iter, 1, 1000))
        self.demapping = check_choice("demapping", demapping, ("app", "maxlog"))
        self.device = device

        sn = _import_sionna()
        self._encoder = sn.LDPC5GEncoder(
            self.k_info, self.n_coded, num_bits_per_symbol=self.bits_per_symbol, device=device
        )
        self._decoder = sn.LDPC5GDecoder(
            self._encoder, num_iter=self.num_iter, hard_out=True, device=device
        )
        self._mapper = sn.Mapper("qam", self.bits_per_symbol, device=device)
        self._demapper = sn.Demapper(self.demapping, "qam", self.bits_per_symbol, device=device)

    @property
    def channel_uses(self) -> int:
        """Complex channel uses per block."""
        return self.n_coded // self.bits_per_symbol

    @property
    def code_rate(self) -> float:
        """LDPC code rate ``k_info / n_coded``."""
        return self.k_info / self.n_coded

    @property
    def bits_per_channel_use(self) -> float:
        """Information bits per complex channel use (spectral efficiency)."""
        return self.k_info / self.channel_uses

    def transmit(
        self,
        bits: torch.Tensor,
        channel: Channel,
        snr_db: float | torch.Tensor,
        generator: torch.Generator | None,
    ) -> ChainOutput:
        r"""Encode, map, send through ``channel``, equalize, demap and decode.

        The receiver forms the unbiased one-tap estimate :math:`\tilde x = y/\hat h`
        (for a single antenna this equals the bias-corrected MMSE estimate) and demaps it
        with the effective noise variance :math:`(N_0 + \sigma_e^2)/|\hat h|^2`, where
        :math:`\sigma_e^2` is the CSI error variance (0 for perfect CSI; the pilot
        error of ``csi="estimated"``, treated as extra Gaussian noise for unit-energy
        symbols). Without CSI (``csi="none"``) the receiver assumes :math:`\hat h = 1`,
        which is right for AWGN and fails (as it should) on fading channels.

        Args:
            bits: ``[..., k_info]`` information bits with values 0/1 (float, int or bool).
            channel: any agentcomm :class:`~agentcomm.channels.base.Channel`.
            snr_db: :math:`E_s/N_0` per QAM symbol in dB, scalar or broadcastable to
                ``bits.shape[:-1]``.
            generator: the explicit source of every random draw (fading, noise, CSI error).
        Returns:
            :class:`ChainOutput` ``(bits_hat, bit_errors, block_delivered, channel_uses)``.
        """
        check_tensor("bits", bits, min_ndim=1)
        if bits.shape[-1] != self.k_info:
            raise ValueError(
                f"bits has shape {tuple(bits.shape)}; expected [..., k_info={self.k_info}]"
            )
        if bits.is_complex() or bool(((bits != 0) & (bits != 1)).any()):
            raise ValueError("bits must hold only the values 0 and 1")
        if not isinstance(channel, Channel):
            raise ValueError(f"channel must be an agentcomm Channel, got {type(channel).__name__}")
        check_finite("snr_db", torch.as_tensor(snr_db, dtype=torch.float32))

        u = bits.to(device=self.device, dtype=torch.float32)
        x = self._mapper(self._encoder(u))
        out = channel.apply(x, snr_db, generator)
        h_hat = out.h_hat if out.h_hat is not None else torch.ones_like(out.h)
        x_tilde = equalize(out.y, h_hat, out.noise_var, "zf")
        gain = (h_hat.real.square() + h_hat.imag.square()).clamp_min(1e-12)
        no_eff = ((out.noise_var + channel.csi_error_var) / gain).expand(x_tilde.shape)
        llr = self._demapper(x_tilde, no_eff)
        u_hat = self._decoder(llr)
        bit_errors = (u_hat != u).sum(dim=-1)
        return ChainOutput(
            bits_hat=u_hat.to(bits.dtype),
            bit_errors=bit_errors,
            block_delivered=bit_errors == 0,
            channel_uses=self.channel_uses,
        )

    def __repr__(self) -> str:
        return (
            f"LDPCQAMChain(k_info={self.k_info}, n_coded={self.n_coded}, "
            f"bits_per_symbol={self.bits_per_symbol}, num_iter={self.num_iter}, "
            f"demapping={self.demapping!r})"
        )
