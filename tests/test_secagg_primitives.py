"""Tests of the secure-aggregation building blocks: fixed point, PRG, keys, Shamir, AEAD, graph."""

import itertools
import secrets
import threading

import numpy as np
import pytest
from scipy.stats import hypergeom

from fedrec.shared.errors import FedrecError
from fedrec.shared.secagg import aead, analysis, fixedpoint, graph, keys, prg, shamir
from fedrec.shared.secagg.errors import SecAggAbort, SecAggRangeError, SecAggTamperError
from fedrec.shared.secagg.params import SecAggParams


# ----- fixed point
@pytest.mark.parametrize("n", [1, 3, 40])
def test_fixedpoint_sum_within_documented_tolerance(n):
    rng = np.random.default_rng(n)
    xs = rng.uniform(-5, 5, size=(n, 1000))
    total = np.zeros(1000, dtype=np.uint64)
    for x in xs:
        total += fixedpoint.encode(x, 24, bound=5.0)
    assert np.abs(fixedpoint.decode(total, 24) - xs.sum(axis=0)).max() <= fixedpoint.tolerance(n, 24)


def test_fixedpoint_sum_exact_at_max_bound():
    n, f = 50, 24
    b = fixedpoint.max_bound(n, f)
    x = np.array([b, -b, b * 0.999])
    total = np.zeros(3, dtype=np.uint64)
    for _ in range(n):
        total += fixedpoint.encode(x, f, bound=b)
    np.testing.assert_allclose(fixedpoint.decode(total, f), n * x, rtol=1e-15)
    assert n * b * 2.0**f < 2.0**62


def test_fixedpoint_overflow_names_index_value_bound():
    x = np.zeros(10)
    x[7], x[9] = 3.5, 100.0
    with pytest.raises(SecAggRangeError, match=r"3\.5 at index 7 .*±3\.0") as e:
        fixedpoint.encode(x, 24, bound=3.0)
    assert isinstance(e.value, FedrecError)
    fixedpoint.encode(np.array([3.0, -3.0]), 24, bound=3.0)  # the bound itself is allowed
    with pytest.raises(SecAggRangeError, match="index 0"):
        fixedpoint.encode(np.array([np.nextafter(3.0, 4.0)]), 24, bound=3.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fixedpoint_rejects_non_finite(bad):
    with pytest.raises(SecAggRangeError, match="index 2"):
        fixedpoint.encode(np.array([0.0, 1.0, bad]), 24, bound=10.0)


def test_fixedpoint_rejects_bound_too_large_for_int64():
    with pytest.raises(SecAggRangeError):
        fixedpoint.encode(np.zeros(2), 24, bound=2.0**40)


def test_params_reject_bound_that_could_overflow():
    with pytest.raises(FedrecError, match="overflow"):
        SecAggParams(bound=fixedpoint.max_bound(10) * 1.01).plan(10)


# ----- PRG, keys
def test_prg_deterministic_and_seed_dependent():
    s1, s2 = secrets.token_bytes(32), secrets.token_bytes(32)
    a = prg.expand(s1, 1000)
    assert a.dtype == np.uint64 and a.shape == (1000,)
    np.testing.assert_array_equal(a, prg.expand(s1, 1000))
    np.testing.assert_array_equal(a[:10], prg.expand(s1, 10))
    assert (a != prg.expand(s2, 1000)).mean() > 0.99
    with pytest.raises(ValueError, match="seed must be 32 bytes, got 5"):
        prg.expand(b"short", 4)


def test_prg_apply_adds_and_subtracts_the_stream_in_place_and_expand_results_do_not_alias():
    s1, s2 = secrets.token_bytes(32), secrets.token_bytes(32)
    a, b = prg.expand(s1, 1000), prg.expand(s2, 1000)
    assert (a != prg.expand(s2, 1000)).mean() > 0.99  # a is its own copy, not the scratch buffer
    y = np.arange(1000, dtype=np.uint64)
    prg.apply(y, s1, +1)
    np.testing.assert_array_equal(y, np.arange(1000, dtype=np.uint64) + a)
    prg.apply(y, s2, -1)
    np.testing.assert_array_equal(y, np.arange(1000, dtype=np.uint64) + a - b)
    prg.apply(y, s1, -1)
    prg.apply(y, s2, +1)
    np.testing.assert_array_equal(y, np.arange(1000, dtype=np.uint64))
    with pytest.raises(ValueError, match="sign"):
        prg.apply(y, s1, 0)


def test_prg_scratch_buffers_are_per_thread_and_grow_for_longer_masks():
    """A new thread starts without a buffer: a short mask, then a longer one, must both be the stream."""
    seed = bytes(range(32))
    want = prg.expand(seed, 3000)
    got = {}

    def work():
        got["short"] = prg.expand(seed, 10)
        got["long"] = prg.expand(seed, 3000)
        y = np.zeros(5000, dtype=np.uint64)
        prg.apply(y, seed, +1)
        got["apply"] = y

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(got["short"], want[:10])  # a KeyError here: the thread raised
    np.testing.assert_array_equal(got["long"], want)
    np.testing.assert_array_equal(got["apply"][:3000], want)
    np.testing.assert_array_equal(got["apply"], prg.expand(seed, 5000))


def test_agree_is_symmetric_and_info_bound():
    a, b = keys.generate(), keys.generate()
    k = keys.agree(a, keys.public_raw(b), b"x")
    assert len(k) == 32 and k == keys.agree(b, keys.public_raw(a), b"x")
    assert k != keys.agree(a, keys.public_raw(b), b"y")
    assert keys.pair_info(b"r", 1, 2, 3, 5) == keys.pair_info(b"r", 1, 2, 5, 3)
    restored = keys.private_from_raw(keys.private_raw(a))
    assert keys.public_raw(restored) == keys.public_raw(a)


# ----- Shamir
def test_shamir_any_t_reconstruct_and_t_minus_1_do_not():
    secret = secrets.token_bytes(32)
    xs, t = [1, 2, 4, 7, 9, 11, 12], 4
    ys = shamir.split(secret, xs, t)
    pts = list(zip(xs, ys))
    for subset in itertools.combinations(pts, t):
        assert shamir.combine(list(subset), t) == secret
    for subset in itertools.combinations(pts, t - 1):
        with pytest.raises(SecAggAbort, match="need at least 4"):
            shamir.combine(list(subset), t)
        # Interpolating t-1 points as if they were enough gives an unrelated value, not the secret.
        try:
            assert shamir.combine(list(subset), t - 1) != secret
        except SecAggAbort:
            pass  # a chunk did not even fit in its 30 bits


def test_shamir_t_minus_1_shares_are_uniform_whatever_the_secret():
    """Perfect secrecy, checked statistically: the first t-1 shares of two very different secrets have the
    same (uniform) distribution in every chunk; a dealer whose random coefficients were weak would fail."""
    xs, t, n = [3, 5, 8], 3, 4000
    for secret in (bytes(32), b"\xff" * 32):
        words = np.array([np.frombuffer(b"".join(shamir.split(secret, xs, t)[:2]), dtype=">u4") for _ in range(n)])
        top_bit = (words >> 30) & 1  # uniform on [0, 2^31 - 1): the top bit is set about half the time
        assert abs(top_bit.mean() - 0.5) < 0.02
        assert len(np.unique(words[:, 0])) > 0.99 * n


def test_shamir_large_threshold_and_indices_are_exact():
    """Thresholds and x-coordinates as large as real cohorts give (no overflow in the field arithmetic)."""
    secret = secrets.token_bytes(32)
    xs = list(range(2**31 - 300, 2**31 - 1))
    t = 150
    ys = shamir.split(secret, xs, t)
    assert shamir.combine(list(zip(xs, ys))[-t:], t) == secret
    assert shamir.combine(list(zip(xs, ys))[::2][:t], t) == secret


def test_shamir_share_bytes_validation():
    y = shamir.split(b"\xff" * 32, [1, 2, 3], 2)[0]
    assert len(y) == shamir.SHARE_BYTES == 36
    assert shamir.share_values(y).tolist() == np.frombuffer(y, dtype=">u4").tolist()
    with pytest.raises(ValueError):
        shamir.share_values(b"\xff" * 36)  # beyond the prime
    with pytest.raises(ValueError):
        shamir.share_values(b"\x00" * 35)
    with pytest.raises(ValueError):
        shamir.split(b"x" * 32, [0, 1], 2)  # x = 0 would reveal the secret
    with pytest.raises(SecAggAbort, match="malformed"):
        shamir.combine([(1, y), (2, b"\xff" * 36)], 2)


# ----- AEAD
def test_aead_roundtrip_and_tamper_named():
    key = secrets.token_bytes(32)
    ad = aead.share_ad(3, 5, 0, 2, 1, "b")
    ct = aead.seal(key, b"secret share", ad)
    assert aead.open_(key, ct, ad) == b"secret share"
    assert aead.seal(key, b"secret share", ad) != ct  # fresh nonce
    bad = bytearray(ct)
    bad[20] ^= 1
    with pytest.raises(SecAggTamperError, match="'b' share from client 3 to client 5") as e:
        aead.open_(key, bytes(bad), ad, sender=3, receiver=5, kind="b")
    assert (e.value.sender, e.value.receiver, e.value.kind) == (3, 5, "b")
    with pytest.raises(SecAggTamperError):  # same ciphertext presented as another round's share
        aead.open_(key, ct, aead.share_ad(3, 5, 0, 3, 1, "b"), sender=3, receiver=5, kind="b")


# ----- graph and parameters
@pytest.mark.parametrize("n,p", [(40, 0.3), (100, 0.5), (7, 0.6), (300, 0.1)])
def test_graph_symmetric_deterministic_and_of_the_requested_density(n, p):
    members = list(range(1, n + 1))
    g = graph.adjacency(members, p, seed=42)
    assert g == graph.adjacency(members, p, seed=42)
    assert g != graph.adjacency(members, p, seed=43)
    for u, vs in g.items():
        assert u not in vs and all(u in g[v] for v in vs)
        assert vs == graph.neighbours_of(u, members, p, seed=42)  # a client's own row equals the server's
    edges = sum(map(len, g.values())) / 2
    pairs = n * (n - 1) / 2
    assert abs(edges - p * pairs) < 5 * np.sqrt(pairs * p * (1 - p))  # a binomial count, within 5 sd


def test_a_cohort_hashed_in_several_blocks_gives_every_client_its_own_row():
    members = list(range(1, 2101))  # more than 2000: the server hashes the pairs a block of rows at a time
    g = graph.adjacency(members, 0.01, seed=5)
    for u in (1, 1000, 1905, 2100):
        assert g[u] == graph.neighbours_of(u, members, 0.01, seed=5)


def test_complete_graph_when_p_is_one():
    assert graph.adjacency([2, 5, 9], 1.0, seed=1) == {2: [5, 9], 5: [2, 9], 9: [2, 5]}


def test_survivors_problem_finds_thin_and_split_survivor_sets():
    ring = {1: [2, 6], 2: [1, 3], 3: [2, 4], 4: [3, 5], 5: [4, 6], 6: [5, 1]}
    assert graph.survivors_problem(ring, [1, 2, 3, 4, 5, 6], 2) == ""
    assert "fewer than 2" in graph.survivors_problem(ring, [1, 2, 3, 4, 5], 2)  # 1 and 5 lost a neighbour
    assert "2 separate groups" in graph.survivors_problem(ring, [1, 2, 4, 5], 1)  # 3 and 6 gone: two pairs


def test_committee_is_seeded():
    members = list(range(1, 101))
    c = graph.committee(members, 15, seed=7)
    assert c == graph.committee(members, 15, seed=7) and len(set(c)) == 15 and set(c) <= set(members)
    assert c != graph.committee(members, 15, seed=8)


def test_disconnect_bound_is_an_upper_bound_on_a_simulated_graph():
    """The union bound must not undershoot: compare it with the disconnection rate of sampled G(h, p)."""
    rng = np.random.default_rng(0)
    h, p = 12, 0.25
    disconnected = 0
    for seed in range(400):
        g = graph.adjacency(list(range(1, h + 1)), p, seed=int(rng.integers(2**62)))
        disconnected += graph.survivors_problem(g, list(range(1, h + 1)), 0) != ""
    assert disconnected / 400 <= np.exp(analysis.log_disconnect_bound(h, p)) + 0.03


@pytest.mark.parametrize("n", [3, 6, 10, 30, 100, 1000, 6040])
def test_plan_meets_the_announced_bounds(n):
    """The numbers behind the guarantees, for the default bounds (a third colluding, a fifth dropping, 2^-40)."""
    params = SecAggParams()
    plan = params.plan(n)
    honest_survivors = n - plan.colluders - plan.max_dropouts
    assert plan.colluders == n // 3 and plan.max_dropouts == n // 5
    if plan.edge_probability < 1.0:
        assert analysis.log_disconnect_bound(honest_survivors, plan.edge_probability) <= -41 * np.log(2)
    # Colluders on the committee stay below the threshold except with probability 2^-40 (certainly when
    # the committee is everyone), and the threshold is a strict majority.
    tail = hypergeom.sf(plan.threshold - 1, n, plan.colluders, plan.committee_size)
    assert tail <= 2.0**-40
    assert plan.threshold == plan.committee_size // 2 + 1
    assert plan.min_neighbours >= 1


def test_plan_numbers_at_100_clients():
    plan = SecAggParams().plan(100)
    assert plan.committee_size == 67 and plan.threshold == 34  # 33 colluders can never reach 34
    assert 0.45 < plan.edge_probability < 0.55  # about 50 neighbours each
    assert plan.min_neighbours == 27  # (1/3)^26 < 2^-40: one of 26 surviving neighbours is honest


def test_params_validation():
    with pytest.raises(FedrecError, match="colluder fraction"):
        SecAggParams(colluder_fraction=0.5).plan(10)
    with pytest.raises(FedrecError, match="dropout bound"):
        SecAggParams(dropout_bound=0.6).plan(10)
    with pytest.raises(FedrecError, match="at least one client"):
        SecAggParams().plan(0)
    one = SecAggParams().plan(1)  # the smallest cohort has a plan (its clients' minimum cohort refuses it)
    assert (one.committee_size, one.threshold, one.colluders, one.max_dropouts) == (1, 1, 0, 0)
    strong, weak = SecAggParams(), SecAggParams(colluder_fraction=0.1)
    assert "colluder fraction" in weak.at_least_as_strong_as(strong)
    assert strong.at_least_as_strong_as(strong) == ""


# ----- records (the wire format of payloads)
def test_payload_records_round_trip_packed_lists_and_reject_malformed_packing():
    from flwr.app import ConfigRecord, RecordDict

    from fedrec.shared import protocol
    from fedrec.shared.secagg.records import payload_records, read_payload

    payload = {"stage": "masked_input", "index": 3, "ids": [5, 1, 2**40], "cts": [b"a" * 36, b"b" * 36],
               "hashes": [], "mixed": [b"x", b"yy"], "flag": True, "vec": np.arange(4, dtype=np.uint64)}
    content = RecordDict(payload_records(payload))
    back = read_payload(content)
    assert {k: v for k, v in back.items() if k != "vec"} == {k: v for k, v in payload.items() if k != "vec"}
    np.testing.assert_array_equal(back["vec"], payload["vec"])
    config = dict(content.config_records[protocol.SECAGG])
    assert config["cts|bytes36"] == b"a" * 36 + b"b" * 36 and config["ids|int64"] == np.array([5, 1, 2**40], ">i8").tobytes()
    for key, value, why in [("cts|bytes36", b"a" * 40, "not a multiple of 36"), ("ids|int64", b"x" * 7, "multiple of 8"),
                            ("ids|float", b"x" * 8, "unknown packing"), ("cts|bytes36", "text", "not bytes")]:
        bad = RecordDict({protocol.SECAGG: ConfigRecord({"stage": "unmask", key: value})})
        with pytest.raises(ValueError, match=why):
            read_payload(bad)
