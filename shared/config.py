"""The one configuration model read by every entry point: TOML file, then command-line overrides."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, model_validator

from fedrec.shared.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class DataConfig(_Section):
    """Where the ratings come from, how they are cleaned and how they are split."""

    dataset: str | None = "synthetic"
    """Built-in dataset: `synthetic`, `ml-100k`, `ml-1m` or `ml-latest-small`. Ignored when `train` is set."""
    train: Path | None = None
    """A CSV/TSV of user,item,rating[,timestamp] used as the training set (needs `test`)."""
    test: Path | None = None
    """A CSV/TSV of held-out ratings, read with the same rules as `train`."""
    data_dir: Path | None = None
    """Folder holding (or receiving) the MovieLens downloads; default $FEDREC_DATA_DIR or the user cache."""
    rating_min: float | None = None
    """Lowest valid rating; default: the dataset's own scale (1 for a CSV)."""
    rating_max: float | None = None
    """Highest valid rating; default: the dataset's own scale (5 for a CSV)."""
    on_bad_rows: Literal["fail", "drop"] = "fail"
    """What to do with malformed, out-of-scale, NaN or duplicate rows: stop with a report, or drop them and report."""
    split: Literal["random", "per-user", "temporal"] = "random"
    """Holdout: global random, per user (fraction or leave-k-out), or by time (the latest ratings are the test set)."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """Fraction of ratings (per user for `per-user`) held out for testing."""
    leave_k: PositiveInt | None = None
    """With `per-user`: hold out exactly k ratings per user instead of a fraction (users keep at least one)."""
    seed: int = 42
    """Seed of the split."""
    feedback: Literal["explicit", "implicit"] = "explicit"
    """`explicit`: ratings to predict; `implicit`: every interaction is a positive (a click, a play), and the
    model (WRMF) is trained and evaluated for ranking over the whole catalogue."""
    positive_threshold: float | None = None
    """Implicit feedback: an interaction is a positive when its value is at least this (e.g. 4 binarises
    MovieLens); the others are dropped. None: every interaction is a positive."""

    @model_validator(mode="after")
    def _threshold_needs_implicit(self) -> DataConfig:
        if self.positive_threshold is not None and self.feedback != "implicit":
            raise ValueError("positive_threshold applies to implicit feedback only: set feedback = \"implicit\" "
                             "(--feedback implicit) or leave the threshold unset")
        if self.positive_threshold is not None and not math.isfinite(self.positive_threshold):
            raise ValueError(f"positive_threshold must be a finite number, got {self.positive_threshold}")
        return self


class SyntheticConfig(_Section):
    """The built-in MovieLens-like generator (dataset `synthetic`)."""

    n_users: PositiveInt = 1000
    """Number of users."""
    n_items: PositiveInt = 1700
    """Number of items."""
    n_ratings: PositiveInt = 100_000
    """Number of distinct (user, item) ratings; at most half of n_users * n_items."""
    rank: PositiveInt = 8
    """Rank of the true taste model."""
    noise: float = Field(0.5, ge=0.0)
    """Standard deviation of the rating noise before rounding."""
    seed: int = 0
    """Seed of the generator."""


class ModelConfig(_Section):
    """Biased matrix factorisation r(u,i) = mu + b_u + b_i + p_u . q_i."""

    factors: NonNegativeInt = 32
    """Latent dimension k (0 gives the biases-only model)."""
    init_std: PositiveFloat = 0.1
    """Standard deviation of the initial factors."""
    reg: float = Field(0.1, ge=0.0)
    """L2 weight on p_u and q_i, applied once per rating they take part in."""
    bias_reg: float = Field(0.01, ge=0.0)
    """L2 weight on b_u and b_i, applied once per rating."""
    seed: int = 0
    """Seed of the initial factors."""
    item_features: str | None = None
    """Fixed, public item factors instead of learned ones: `genres` (the genre flags of a built-in MovieLens
    dataset) or a CSV file `item,f1,f2,...` with a header row; each item's row is scaled to unit length, and an
    item without features gets a zero row (bias only). `factors` must equal the number of feature columns
    (ml-100k has 19 genres, ml-1m 18, ml-latest-small 20). The server never updates these factors, so clients
    send only the item-bias part of their update: under differential privacy all of a user's clip goes to the
    biases, as in the biases-only model, while each user's factors (its taste for each feature) are learned on
    its own client and never released. Explicit feedback only (federated and centralised training). None:
    learned factors."""
    alpha: PositiveFloat = 10.0
    """Implicit feedback: confidence of a positive, c = 1 + alpha (every other user-item pair has confidence 1)."""


class TrainConfig(_Section):
    """Centralised training: full-batch steps over the pooled training set."""

    epochs: PositiveInt = 60
    """Number of full-batch steps."""
    optimizer: Literal["adam", "sgd", "adagrad"] = "adam"
    """Per-parameter update rule."""
    lr: PositiveFloat = 0.03
    """Learning rate."""
    implicit_solver: Literal["als", "cg", "gradient"] = "als"
    """Implicit feedback: `als` solves users then items exactly each epoch (alternating least squares);
    `cg` is ALS with `cg_steps` conjugate-gradient steps per row instead of exact solves, warm-started from
    the last epoch, in float32 (faster, approximate: the `implicit` package's default); `gradient` solves users exactly
    and takes one optimizer step on the item gradient, the step federated training takes (for like-for-like
    comparisons)."""
    cg_steps: PositiveInt = 3
    """Implicit feedback, `implicit_solver = "cg"`: conjugate-gradient steps per row and epoch (k steps solve
    exactly)."""


class EvalConfig(_Section):
    """Ranking evaluation."""

    top_k: PositiveInt = 10
    """Length of each recommendation list."""
    relevant_threshold: float = 4.0
    """A held-out rating at or above this is relevant."""
    coverage: bool = False
    """Federated runs: also sum per-item recommendation counts for catalogue coverage. Off by default: over
    evaluations with different participants (a dropout) the server can difference them and read which items
    a client's users were recommended, which hints at what they rated (rated items are never recommended)."""


class FederatedConfig(_Section):
    """Federated training on Flower: clients, sampling, local work and the server optimizer."""

    num_clients: PositiveInt = 10
    """Number of clients in simulation (each holds the ratings of a disjoint set of users)."""
    rounds: PositiveInt = 60
    """Number of training rounds."""
    partition: Literal["iid", "activity"] = "iid"
    """How users are dealt to clients: at random, or in bands of activity (non-IID)."""
    fraction: float = Field(1.0, gt=0.0, le=1.0)
    """Fraction of clients sampled per round (ignored when `clients_per_round` is set)."""
    clients_per_round: PositiveInt | None = None
    """Exact number of clients sampled per round."""
    min_clients: PositiveInt = 1
    """A round with fewer replies than this is skipped and the model left unchanged."""
    timeout: PositiveFloat = 300.0
    """Seconds to wait for the replies of one exchange; late clients are left out of that round."""
    update: Literal["gradient", "delta", "als"] = "gradient"
    """What clients send: the item-side gradient at the received model, or the count-weighted change
    of the item side after `local_epochs` local steps (FedAvg style); with implicit feedback also `als`:
    each item's normal-equation sums over the client's users, from which the server solves every item
    exactly (federated ALS: one round is one centralised ALS epoch; (k + 3)/2 times the gradient's values)."""
    local_epochs: PositiveInt = 1
    """Local full-batch steps per round (user side only in `gradient` mode, both sides in `delta` mode)."""
    client_optimizer: Literal["adam", "sgd", "adagrad"] = "adam"
    """Update rule of the client's local steps."""
    client_lr: PositiveFloat = 0.03
    """Learning rate of the client's local steps."""
    server_optimizer: Literal["adam", "sgd", "adagrad"] = "adam"
    """Update rule the server applies to the summed item-side update."""
    server_lr: PositiveFloat = 0.03
    """Learning rate of the server optimizer (with `delta` and `sgd`, 1.0 is FedAvg)."""
    server_lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """How the server learning rates change over the `rounds` steps: constant, or decaying linearly or along a
    cosine from their value to 1/rounds of it. Under differential privacy a decay lets the item side settle
    instead of fluctuating with each round's noise around its optimum."""
    server_factor_lr: PositiveFloat | None = None
    """Learning rate of the server optimizer on the item factors q only (None: `server_lr`; with implicit
    feedback the item side is all factors, so it is their rate). Under
    differential privacy a much smaller one keeps the noise on the k factor coordinates of every item from
    turning into a random walk of q, while the biases still move at `server_lr`."""
    eval_every: PositiveInt = 1
    """Evaluate on every client's test ratings every this many rounds (and always after the last)."""
    seed: int = 0
    """Seed of client sampling."""
    secure: bool = True
    """Sum the clients' vectors with secure aggregation, so the server learns only the sum (the default)."""


class SecAggConfig(_Section):
    """Secure aggregation: the bounds the server announces, and each client's own policy.

    The server announces `dropout_bound`, `colluder_fraction` and `security_bits`; the mask graph, the
    share-holding committee and its threshold are derived from them (see the README's threat model). A
    client treats its own values as minimums: it refuses a server announcing weaker bounds."""

    dropout_bound: float = Field(0.2, ge=0.0, lt=0.5)
    """Largest fraction of a cohort that may drop out of one exchange; more dropouts abort that exchange."""
    colluder_fraction: float = Field(1 / 3, ge=0.0, lt=0.5)
    """Largest fraction of a cohort that may collude with the server (pooling their secrets)."""
    security_bits: int = Field(40, ge=1, le=128)
    """The graph or committee reveals more than the sum with probability at most 2^-security_bits."""
    require_secure: bool | None = None
    """Client policy: refuse to send an unmasked vector. None: required unless this same configuration turns
    secure aggregation off (`federated.secure = false`, as `fedrec simulate --no-secure` does)."""
    min_cohort: int = Field(3, ge=2)
    """Client policy: the smallest cohort, and smallest set of survivors, its vector may be summed in (in a
    sum of two, each reads the other's input)."""


class DPConfig(_Section):
    """User-level differential privacy on every sum the server decodes (needs secure aggregation).

    Each client clips each of its users' contribution to every vector, then adds its share of Skellam noise in
    the fixed-point domain before masking, so the decoded sum carries the full noise even when the announced
    share of clients drop out or collude. fedrec picks the noise that spends at most `epsilon` over the planned
    releases (one statistics sum, every training round, every evaluation)."""

    epsilon: PositiveFloat | None = None
    """The privacy budget; None turns differential privacy off."""
    delta: float | None = Field(None, gt=0.0, lt=1.0)
    """The delta of (epsilon, delta)-DP; None: 1 / number of users (simulation; a deployed server needs it set)."""
    clip: PositiveFloat = 1.0
    """L2 bound on one user's contribution to a training update (item gradient rows and biases)."""
    factor_share: float | None = Field(None, gt=0.0, lt=1.0)
    """Split `clip` between the two parts of a user's training contribution: the item-factor rows are clipped
    to clip * sqrt(factor_share) and the item-bias part, on its own, to clip * sqrt(1 - factor_share). The
    whole stays within `clip` (the accounting is unchanged); the share fixes how much of the signal-to-noise
    budget each part gets. None clips both together; ignored with model.factors = 0."""
    eval_clip: PositiveFloat = 50.0
    """L2 bound on one user's contribution to an evaluation sum (squared error, absolute error, test count)."""


class LoopConfig(_Section):
    """The closed loop (`fedrec loop`): recommend, simulated users respond, store, train, repeat."""

    world: Literal["synthetic", "ml-100k", "ml-1m", "ml-latest-small"] = "synthetic"
    """Ground truth: the synthetic generator's true taste, or an explicit MF fitted to a MovieLens dataset
    (its predicted ratings are the truth); the starting interactions are the dataset's positives."""
    start_threshold: float | None = 4.0
    """The starting interactions: the world dataset's ratings at or above this (None: all of them). A rating
    of 4 or 5 says the user liked the item, so the start carries taste; all ratings carry mostly popularity."""
    steps: PositiveInt = 10
    """Recommend-respond-train steps."""
    rounds_per_step: PositiveInt = 5
    """Training rounds (federated) or epochs (centralised) on the grown data after each step."""
    warmup_rounds: PositiveInt = 20
    """Training rounds or epochs on the starting interactions, before the first step."""
    top_n: PositiveInt = 10
    """Recommendations shown to every user at every step."""
    position_bias: float = Field(1.0, ge=0.0)
    """A user examines rank j (0-based) with probability 1 / (1 + j)^position_bias (0: every rank)."""
    no_response: float = Field(0.2, ge=0.0, lt=1.0)
    """Chance that a user does not look at the step's list at all."""
    click_sharpness: PositiveFloat = 2.0
    """An examined item is clicked with probability sigmoid(click_sharpness * z + click_offset), z the
    standardised true affinity of the user for the item."""
    click_offset: float = -3.0
    """See click_sharpness: -3 makes an average item's click chance about 5%."""
    explore: Literal["none", "epsilon-greedy", "thompson"] = "none"
    """Exploration of the MF policies: none, a random unseen item in each slot with probability `epsilon`, or
    scores from user factors drawn from their posterior (Thompson-style sampling)."""
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    """Epsilon-greedy: the chance of each slot being explored."""
    thompson_scale: PositiveFloat = 1.0
    """Thompson: the posterior draw's standard deviation scale (1: the WRMF posterior N(x_u, A_u^-1))."""
    seed: int = 0
    """Seed of the responses, the exploration and the random policy."""


class FedrecConfig(_Section):
    """Every setting of fedrec, grouped by concern."""

    data: DataConfig = DataConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    federated: FederatedConfig = FederatedConfig()
    secagg: SecAggConfig = SecAggConfig()
    dp: DPConfig = DPConfig()
    loop: LoopConfig = LoopConfig()

    @model_validator(mode="after")
    def _dp_needs_secure_gradient_training(self) -> FedrecConfig:
        if self.dp.epsilon is not None and not self.federated.secure:
            raise ValueError("dp.epsilon needs secure aggregation (federated.secure = true): each client adds only "
                             "a share of the noise, which protects nobody in a plain sum")
        if self.dp.epsilon is not None and self.federated.update != "gradient":
            raise ValueError("dp.epsilon needs federated.update = \"gradient\" (delta updates need exact item counts)")
        if self.dp.epsilon is not None and self.data.feedback == "implicit":
            raise ValueError("dp.epsilon is not available with implicit feedback yet (the per-user clipping of the "
                             "dense implicit item gradient is not implemented); use secure aggregation without DP")
        if self.data.feedback == "implicit" and self.federated.update == "delta":
            raise ValueError("implicit feedback trains with federated.update = \"gradient\" or \"als\" (users are "
                             "solved exactly on the client; the server steps or solves the items from the sums)")
        if self.model.item_features is not None and self.data.feedback == "implicit":
            raise ValueError("model.item_features is for explicit ratings (federated or centralised training); implicit "
                             "feedback learns its item factors")
        if self.data.feedback != "implicit" and self.federated.update == "als":
            raise ValueError("federated.update = \"als\" is for implicit feedback (--feedback implicit): explicit "
                             "ratings train with \"gradient\" or \"delta\"")
        return self


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, field = dotted.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"invalid configuration key {dotted!r}: {section!r} is not a section")
    node[field] = value


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> FedrecConfig:
    """Read `path` (TOML) if given, apply `overrides` ({"model.factors": 16, ...}) and validate once."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            tree = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
            source = f"{source} + command line" if "command line" not in source else source
    try:
        return FedrecConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
