"""Benchmark only: the sum secure aggregation decodes (with or without DP), computed without the pairwise masks.

Secure aggregation decodes, modulo 2^64, the sum of the clients' noised fixed-point vectors: every mask is
added by one client and subtracted by another (or reconstructed and removed), so it cancels exactly
(tests/test_secagg_protocol.py checks the decoded sum against the plain one). This sum skips the masks and
the key agreement, and keeps everything else: the same ClientApp code computes each client's clipped vector
from its own Context (so its user state carries over rounds as in a real run), each client adds its own
Skellam share sized for the same cohort plan (dropouts and colluders) when the task asks for DP, and the
server decodes and rescales as usual. It is mathematically the same release; it only makes 943 clients per
round affordable in a benchmark, and nothing outside simulations/ uses it.

`noise_cohort` N goes one step further, for one client per user: every user's contribution is clipped on
its own, so the clipped sum does not depend on how users are grouped into clients, and a sum of independent
Skellam shares is Skellam with the summed parameter. So m in-process clients that together add N shares
sized for an N-client cohort (each adds N/m of them) decode a sum with exactly the distribution of the
N-client one, apart from where the unbiased 2^-24 rounding happens and which seed draws each user's initial
factors. This is what makes a 60-round, 943-client table affordable here. One more difference, about the
sampler: a grouped client's Skellam parameter is N/m times a real client's, around 1e14-1e16 here, where
numpy's Poisson sampler is not accurate (measured: variance +1% at 1e14, +9% at 3e14, +42% at 1e16, with
heavy tails), so a grouped client draws its noise as a normal of variance 2 mu rounded to integers, which is
Skellam(mu) to a total variation distance of order 1/sqrt(mu), below 1e-6 here.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Message, MessageType

from fedrec.client.app import compute_vector, effective_config
from fedrec.server.aggregation import SumResult, build_content
from fedrec.server.inprocess import InProcessGrid
from fedrec.shared import protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.dp.skellam import randomized_round, secure_rng
from fedrec.shared.secagg import fixedpoint
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.client import noised_encoding
from fedrec.shared.secagg.params import from_config


class UnmaskedSum:
    """The decoded secure sum of an InProcessGrid's clients, without pairwise masks (same VectorSum interface)."""

    def __init__(self, grid: InProcessGrid, config: FedrecConfig, noise_cohort: int | None = None):
        self.grid, self.config, self.params = grid, config, from_config(config)
        self.noise_cohort = noise_cohort  # None: each client adds its own share, as in a real run

    def encode(self, x: np.ndarray, noise: tuple[float, float], n_clients: int) -> np.ndarray:
        """One of n_clients' noised encoding; with a noise cohort of N, the shares of N/n_clients clients."""
        plan = self.params.plan(n_clients)
        if self.noise_cohort is None:
            return noised_encoding(x, noise, plan)
        cohort = self.params.plan(self.noise_cohort)
        share = NoisePlan(noise[0], 1.0, x.size, cohort.n, cohort.max_dropouts, cohort.colluders, cohort.frac_bits)
        mu = share.client_mu * cohort.n / n_clients
        x = np.asarray(x, dtype=np.float64) / noise[1]
        fixedpoint.check_range(x, plan.frac_bits, plan.bound)  # the same range check as a real client's
        rng = secure_rng()  # OS randomness, as a real client's noise
        noised = randomized_round(x * 2.0**plan.frac_bits, rng) + np.rint(rng.normal(0.0, np.sqrt(2 * mu), x.size)).astype(np.int64)
        return noised.view(np.uint64)

    def sum(self, node_ids: list[int], config: dict, arrays: dict[str, np.ndarray], length: int, group: str) -> SumResult:
        plan = self.params.plan(len(node_ids))
        dp = protocol.DP_NOISE in config
        noise = (float(config[protocol.DP_NOISE]), float(config[protocol.DP_CLIP])) if dp else None
        total = np.zeros(length, dtype=np.uint64)
        for node in node_ids:
            # One message per client, as the masked-input stage would carry it (task settings and item side).
            content = build_content({**config, "stage": f"secagg.{M.MASKED_INPUT}"}, arrays)
            message = Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN, group_id=group)
            context = self.grid.contexts[node]
            x = compute_vector(message, context, effective_config(message, context, self.config))
            # As SecAggClient.masked_input encodes before masking; uint64 arithmetic wraps mod 2^64, as there.
            total += self.encode(x, noise, len(node_ids)) if dp else fixedpoint.encode(x, plan.frac_bits, plan.bound)
        return SumResult(total=fixedpoint.decode(total, plan.frac_bits), participants=list(node_ids))
