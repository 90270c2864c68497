"""Names of the records and fields in fedrec's Flower messages, kept in one place for both sides."""

CONFIG = "fedrec.config"
"""ConfigRecord: task, stage, round and, for train/evaluate, the global mean."""
ITEM = "fedrec.item"
"""ArrayRecord: the item side (q, bi) and, for evaluation, the mask of known items."""
REPLY = "fedrec.reply"
"""ArrayRecord of a reply: `vector`, the client's contribution to the sum (nothing else leaves a client)."""

TASK_STATS, TASK_TRAIN, TASK_EVALUATE = "stats", "train", "evaluate"
STAGE_PLAIN = "plain"
SECAGG = "fedrec.secagg"
"""ConfigRecord: one secure-aggregation stage's payload (scalars, bytes and lists)."""
SECAGG_ARRAYS = "fedrec.secagg.arrays"
"""ArrayRecord: the payload's arrays (the masked input)."""
DP_NOISE, DP_CLIP = "dp_noise", "dp_clip"
"""Config fields under differential privacy: the run's noise multiplier and this release's per-user L2 clip."""
DP_FACTOR_SHARE = "dp_factor_share"
"""Config field of a DP train task when `dp.factor_share` splits its clip between the factor and the bias part."""
SETTINGS = "settings"
"""Config field: JSON of the server's model, federated and eval settings, which every client follows."""
ITEMS = "items"
"""Config field (deployment): the public item catalogue, so that every client codes items the same way."""
RUN_ID = "run-id"
"""Config field: the identity of the training run (stable across a server's --resume), so a client keeps its
users' state only within one run."""
RESUMED = "resumed"
"""Config field: True when the server resumed this run from its checkpoint."""

# Node-config keys of a deployed client (set by `fedrec client`); in simulation Flower's partition keys are used.
NODE_DATA_FILE, NODE_TEST_FILE, NODE_STATE_DIR = "data-file", "test-file", "state-dir"
NODE_RATING_MIN, NODE_RATING_MAX, NODE_ON_BAD_ROWS = "rating-min", "rating-max", "on-bad-rows"
# A deployed client's own privacy policy (its `secagg` settings), which the server's settings never override.
NODE_POLICY = {"require_secure": "require-secure", "min_cohort": "min-cohort", "dropout_bound": "dropout-bound",
               "colluder_fraction": "colluder-fraction", "security_bits": "security-bits"}
