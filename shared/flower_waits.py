"""Shorter retry waits for Flower 1.42's object pulls, which both the server and the clients make.

Flower moves a message as a small header plus content-addressed objects (the arrays and records). The
receiver gets the header first and then pulls each object; an object that is not there yet (its sender is
still pushing it) is retried after 1 s, then 2, 4 and up to 10 s (flwr/supercore/constant.py:
PULL_INITIAL_BACKOFF, PULL_BACKOFF_CAP). On one deployment exchange that race happens up to three times: the
SuperNode pulling the server's message from the SuperLink, the ClientApp pulling it from its SuperNode, the
ServerApp pulling the reply. Each lost race costs a whole second for transfers that take milliseconds, which
was most of a deployment round. Here the first retry comes after 10 ms and the wait grows to at most 0.5 s;
the number of tries grows so that the total patience stays Flower's (about 500 tries of up to 10 s).
FEDREC_PULL_RETRY=flower keeps Flower's own waits (for side-by-side benchmarks: simulations/bench_deployment.py).

Besides `shared/secagg/records.py`, the one module in `shared/` that touches Flower; it imports it only when called.
"""

from __future__ import annotations

import os

FIRST_RETRY_SECONDS = 0.01
LONGEST_RETRY_SECONDS = 0.5


def shorten_object_pull_retries(first: float = FIRST_RETRY_SECONDS, longest: float = LONGEST_RETRY_SECONDS) -> None:
    """Make every later object pull in this process retry after `first` seconds, doubling up to `longest`."""
    if os.environ.get("FEDREC_PULL_RETRY", "fedrec") == "flower":
        return
    from flwr.supercore import constant
    from flwr.supercore.inflatable import inflatable_utils

    # Flower's callers take these as keyword defaults, fixed when its functions were defined, and pass none of
    # them (http_grid.pull_messages, start_client_internal, run_clientapp): change the defaults themselves.
    tries = round(constant.PULL_MAX_TRIES_PER_OBJECT * constant.PULL_BACKOFF_CAP / longest)
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        function.__kwdefaults__.update(initial_backoff=first, backoff_cap=longest, max_tries_per_object=tries)
