"""The mutation runner's estimate (simulations/mutation.py): exact counts plus a random sample's FIRST-PASS rate
applied to the mutants still never run, and an exact score once none is left."""

import json

from fedrec.simulations import mutation


def _folder(tmp_path, codes, sample, first_pass=None):
    meta = tmp_path / "mutants" / "fedrec" / "shared" / "secagg" / "x.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    data = {"pool": sum(code is None for code in codes.values()) + len(sample), "seed": 3, "names": sample}
    if first_pass is not None:
        data["first_pass"] = first_pass
    (tmp_path / "sample.json").write_text(json.dumps(data))
    return tmp_path


def test_the_estimate_uses_the_samples_first_pass_and_the_mutants_still_never_run(tmp_path):
    # 10 run before (8 killed); a sample of 4 (2 killed at its first pass, one more after a --check); 4 never run.
    codes = {f"m{i}": 1 if i < 8 else 0 for i in range(10)}
    codes |= {"s0": 1, "s1": 1, "s2": 1, "s3": 0} | {f"n{i}": None for i in range(4)}
    folder = _folder(tmp_path, codes, ["s0", "s1", "s2", "s3"], {"s0": 1, "s1": 1, "s2": 0, "s3": 0})
    text = mutation.estimate(folder)
    assert "2 of a random 4 (first pass; 3 killed now)" in text and "4 still never run" in text
    assert "estimated score 66.7%" in text  # (8 + 0.5 * 8) / 18


def test_a_sample_of_every_mutant_left_gives_an_exact_score(tmp_path):
    codes = {"m0": 1, "m1": 0, "s0": 1, "s1": 0}
    text = mutation.estimate(_folder(tmp_path, codes, ["s0", "s1"], {"s0": 1, "s1": 0}))
    assert "none left unrun: exact score 50.0% (2 of 4; 2 now)" in text
