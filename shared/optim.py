"""Per-parameter update rules (SGD, Adam, Adagrad) over named arrays, with state that can be saved and loaded."""

from __future__ import annotations

from typing import Literal

import numpy as np

OptimizerName = Literal["sgd", "adam", "adagrad"]


class Optimizer:
    """Updates a dict of arrays in place from a dict of gradients; the state is a dict of arrays too."""

    def __init__(
        self,
        name: OptimizerName,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        key_lrs: dict[str, float] | None = None,
    ):
        if name not in ("sgd", "adam", "adagrad"):
            raise ValueError(f"unknown optimizer {name!r}")
        self.name, self.lr, self.betas, self.eps = name, lr, betas, eps
        self.key_lrs = dict(key_lrs or {})  # a learning rate of its own for some arrays (e.g. item factors)
        self.state: dict[str, np.ndarray] = {"t": np.zeros(1, dtype=np.int64)}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr_scale: float = 1.0) -> None:
        """One update; `lr_scale` multiplies every learning rate for this step (a schedule)."""
        self.state["t"] += 1
        for key, grad in grads.items():
            self._update(key, params[key], grad, lr_scale)

    @property
    def steps(self) -> int:
        """Updates taken so far (saved with the state, so a schedule resumes where it was)."""
        return int(self.state["t"][0])

    def _slot(self, name: str, like: np.ndarray) -> np.ndarray:
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    def _update(self, key: str, param: np.ndarray, grad: np.ndarray, lr_scale: float = 1.0) -> None:
        lr = self.key_lrs.get(key, self.lr) * lr_scale
        if self.name == "sgd":
            param -= lr * grad
        elif self.name == "adagrad":
            total = self._slot(f"{key}.sum_sq", param)
            total += grad * grad
            param -= lr * grad / (np.sqrt(total) + self.eps)
        else:
            beta1, beta2 = self.betas
            t = int(self.state["t"][0])
            mean = self._slot(f"{key}.m", param)
            var = self._slot(f"{key}.v", param)
            mean *= beta1
            mean += (1 - beta1) * grad
            var *= beta2
            var += (1 - beta2) * grad * grad
            step = lr / (1 - beta1**t)
            param -= step * mean / (np.sqrt(var / (1 - beta2**t)) + self.eps)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.state = {key: np.array(value) for key, value in state.items()}


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Learning-rate multiplier of 1-based `step` of `total` under `schedule` ("constant", "linear", "cosine").

    The decaying schedules start at 1 and end at 1/total (never 0, and steps past `total` keep that value).
    """
    if schedule == "constant":
        return 1.0
    position = min(max(step - 1, 0), total - 1) / total  # 0 at the first step, (total-1)/total at the last
    if schedule == "linear":
        return 1.0 - position
    if schedule == "cosine":
        return max(0.5 * (1.0 + np.cos(np.pi * position)), 1.0 / total)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
