"""`fedrec audit` end to end on tiny data: it finds the leaks of plain mode and none beyond popularity under DP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedrec.shared.cli import main


def test_audit_finds_plain_leaks_and_reports_dp_near_the_popularity_guess(tmp_path: Path, capsys):
    out = tmp_path / "audit"
    code = main(["audit", "--set", "synthetic.n_users=30", "--set", "synthetic.n_items=40",
                 "--set", "synthetic.n_ratings=600", "--factors", "3", "--rounds", "9", "--clients-per-round", "6",
                 "--dropout-every", "3", "--dp-epsilon", "8", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "audit.json").read_text())
    assert (out / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain, dp = report["modes"]["plain"]["attacks"], report["modes"]["secure-sum+dp"]["attacks"]
    assert plain["rated_items_from_replies"]["auc"] > 0.99  # individual replies name the rated items
    assert plain["rating_recovery"]["exact"] > 0.95  # and FedMF recovers the ratings themselves
    assert "rated_items_from_replies" not in report["modes"]["secure-sum"]["attacks"]  # no individual vector seen
    # Under DP the sum attacks are at the popularity guess. The noise is the OS's, and differencing here attacks
    # only the few clients that dropped out, so one attack's AUC varies: the mean over the three is the check.
    advantages = [dp[name]["advantage_auc"] for name in ("differencing", "least_squares", "support_intersection")]
    assert np.mean(advantages) < 0.05 and max(advantages) < 0.2, advantages
    assert report["modes"]["secure-sum+dp"]["runs"]["sampled"]["privacy"] == "secure-sum+dp"
    assert "differencing" in capsys.readouterr().out
