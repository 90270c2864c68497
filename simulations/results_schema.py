"""The schema of `fedrec compare`'s results.json: validated before it is written, and by tests after."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

SettingName = Literal["centralized", "federated", "federated-secure", "federated-secure-dp", "federated-per-user"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


class RoundEntry(_Strict):
    """One round (one epoch for `centralized`), averaged over the repeats."""

    round: PositiveInt
    clients: NonNegativeFloat | None = None
    """Clients whose update was summed this round (None for centralised training)."""
    rmse: float | None = None
    """Test RMSE after the round; None on rounds without evaluation."""
    rmse_std: float | None = None
    """Standard deviation of `rmse` over the repeats (None with one repeat)."""
    mae: float | None = None
    ndcg_at_10: float | None = Field(None, alias="ndcg@10")
    train_rmse: float | None = None
    """RMSE on the ratings trained on this round, at the model the round started from."""
    train_loss: float | None = None
    """Implicit feedback, centralised: the WRMF training loss per positive after the epoch."""
    seconds: NonNegativeFloat
    bytes_up: NonNegativeFloat = 0.0
    """Payload bytes the clients sent this round (training and evaluation exchanges)."""
    bytes_down: NonNegativeFloat = 0.0
    """Payload bytes the server sent this round."""
    skipped: str | None = None
    """Why the round left the model unchanged, if it did (in any repeat)."""
    epsilon: float | None = None
    """Differential privacy spent so far (the DP setting only)."""


class RunMetrics(_Strict):
    """The final metrics of one repeat (one model seed)."""

    seed: int
    rmse: float | None = None
    """None with implicit feedback (no ratings to predict)."""
    mae: float | None = None
    ndcg_at_10: float | None = Field(None, alias="ndcg@10")
    """None under differential privacy (ranking sums are not released)."""
    recall_at_10: float | None = Field(None, alias="recall@10")
    precision_at_10: float | None = Field(None, alias="precision@10")
    map_at_10: float | None = Field(None, alias="map@10")
    """Implicit feedback only."""
    wall_seconds: NonNegativeFloat
    bytes_up_per_client_per_round: NonNegativeFloat | None = None


class SettingRow(_Strict):
    """One setting of the comparison: the mean (and standard deviation) over its repeats, or why it failed."""

    name: SettingName
    status: Literal["ok", "failed"]
    error: str | None = None
    """The failure, as `ExceptionType: message` (only when status is failed)."""
    rmse: float | None = None
    rmse_std: float | None = None
    mae: float | None = None
    mae_std: float | None = None
    ndcg_at_10: float | None = Field(None, alias="ndcg@10")
    ndcg_at_10_std: float | None = Field(None, alias="ndcg@10_std")
    recall_at_10: float | None = Field(None, alias="recall@10")
    recall_at_10_std: float | None = Field(None, alias="recall@10_std")
    precision_at_10: float | None = Field(None, alias="precision@10")
    precision_at_10_std: float | None = Field(None, alias="precision@10_std")
    map_at_10: float | None = Field(None, alias="map@10")
    """Mean average precision at 10 (implicit feedback only)."""
    map_at_10_std: float | None = Field(None, alias="map@10_std")
    wall_seconds: NonNegativeFloat | None = None
    wall_seconds_std: NonNegativeFloat | None = None
    bytes_up_per_client_per_round: NonNegativeFloat | None = None
    """Mean over rounds of (bytes uploaded that round / clients summed that round); None when centralised."""
    bytes_up_per_client_per_round_std: NonNegativeFloat | None = None
    rounds: PositiveInt
    """Federated rounds, or centralised full-batch epochs (the same training budget)."""
    num_clients: PositiveInt | None = None
    clients_per_round: PositiveInt | None = None
    secure: bool | None = None
    privacy: Literal["none", "secure-sum", "secure-sum+dp"] | None = None
    """What protected the clients' data from the server (None for centralised training)."""
    dp: dict[str, Any] | None = None
    """The DP setting's accounting: epsilon, delta, noise_multiplier, clip, rounds, sampling_rate, mechanism."""
    seeds: list[int]
    """The model seeds of the repeats (the split is the same for all)."""
    runs: list[RunMetrics] = []
    history: list[RoundEntry] = []

    @model_validator(mode="after")
    def _status_matches_content(self) -> SettingRow:
        if self.status == "failed" and not self.error:
            raise ValueError("a failed setting needs an error message")
        if self.status == "ok":
            if self.rmse is None and self.mae is None:  # implicit feedback: ranking metrics only
                needed = ("wall_seconds", "ndcg_at_10", "recall_at_10", "map_at_10")
            else:
                needed = ("rmse", "mae", "wall_seconds") + (() if self.name == "federated-secure-dp" else ("ndcg_at_10", "recall_at_10"))
            missing = [key for key in needed if getattr(self, key) is None]
            if missing or not self.runs:
                raise ValueError(f"a successful setting needs its metrics and runs (missing: {missing or ['runs']})")
        return self


class DataSummary(_Strict):
    source: str
    """The dataset name, or `train=FILE test=FILE`."""
    n_train: NonNegativeInt
    n_test: NonNegativeInt
    n_users: NonNegativeInt
    n_items: NonNegativeInt


class CompareResults(_Strict):
    """Everything `fedrec compare` measured, with what is needed to reproduce it."""

    schema_version: Literal[1] = 1
    command: str
    created: str
    """UTC time the comparison finished (ISO 8601)."""
    top_k: Literal[10] = 10
    repeats: PositiveInt
    data: DataSummary
    config: dict[str, Any]
    """The configuration shared by every setting (each row lists what it changes)."""
    rows: list[SettingRow]

    @model_validator(mode="after")
    def _unique_names(self) -> CompareResults:
        names = [row.name for row in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate settings: {names}")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"
