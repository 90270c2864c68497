"""Names of the records and fields in fedrec's Flower messages, kept in one place for both sides."""

CONFIG = "fedrec.config"
"""ConfigRecord: task, stage, round and, for train/evaluate, the global mean."""
ITEM = "fedrec.item"
"""ArrayRecord: the item side (q, bi) and, for evaluation, the mask of known items."""
REPLY = "fedrec.reply"
"""ArrayRecord of a reply: `vector`, the client's contribution to the sum (nothing else leaves a client)."""

TASK_STATS, TASK_TRAIN, TASK_EVALUATE = "stats", "train", "evaluate"
STAGE_PLAIN = "plain"
