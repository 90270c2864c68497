"""The numbers behind the secure-aggregation guarantees, checked against their definitions (shared/secagg/
analysis.py's docstring), and the announced parameters a client checks: ranges, the plan, the policy, payloads.

Found by mutation testing: the disconnection bound could lose a term, drop its binomial coefficient or
return +inf at an edge, and the plan still "met the bound" because the plan tests used the same function."""

import math

import numpy as np
import pytest
from scipy.stats import hypergeom

from fedrec.shared.config import load_config
from fedrec.shared.errors import ConfigError
from fedrec.shared.secagg import analysis, fixedpoint
from fedrec.shared.secagg.params import SecAggParams, from_config, policy_from_config

LN2 = math.log(2.0)


def disconnect_bound(h: int, p: float) -> float:
    """sum_{s=1}^{h/2} C(h, s) (1 - p)^{s (h - s)}, in exact-enough float arithmetic."""
    return sum(math.comb(h, s) * (1.0 - p) ** (s * (h - s)) for s in range(1, h // 2 + 1))


@pytest.mark.parametrize("h,p", [(2, 0.3), (3, 0.5), (4, 0.1), (7, 0.6), (10, 0.2), (25, 0.35), (40, 0.9)])
def test_disconnect_bound_is_the_union_bound_of_its_definition(h, p):
    assert analysis.log_disconnect_bound(h, p) == pytest.approx(math.log(disconnect_bound(h, p)), rel=1e-9, abs=1e-9)


def test_disconnect_bound_at_the_edges():
    assert analysis.log_disconnect_bound(0, 0.5) == -math.inf  # nobody, or one client: nothing to disconnect
    assert analysis.log_disconnect_bound(1, 0.5) == -math.inf
    assert analysis.log_disconnect_bound(2, 0.25) == pytest.approx(math.log(2 * 0.75))
    assert analysis.log_disconnect_bound(10, 1.0) == -math.inf  # the complete graph is connected


@pytest.mark.parametrize("h,bits", [(10, 20), (30, 40), (60, 40), (200, 40), (67, 64)])
def test_edge_probability_is_the_smallest_that_meets_the_target(h, bits):
    target = -(bits + 1) * LN2
    p = analysis.edge_probability(h, bits)
    assert p == 1.0 or 0.0 < p <= 0.9
    if p < 1.0:
        assert analysis.log_disconnect_bound(h, p) <= target < analysis.log_disconnect_bound(h, p * (1 - 1e-6))
    else:  # nothing sparser than about 0.9 works: the complete graph
        assert analysis.log_disconnect_bound(h, 0.9) > target


def test_two_or_fewer_honest_survivors_need_the_complete_graph():
    assert analysis.edge_probability(1, 40) == analysis.edge_probability(2, 40) == 1.0


def test_majority_is_strict():
    for m in range(1, 12):
        t = analysis.majority(m)
        assert 2 * t > m >= 2 * (t - 1)  # two disjoint quorums cannot exist, and no smaller t is a majority


@pytest.mark.parametrize("n,colluders,bits", [(30, 10, 40), (100, 33, 40), (300, 100, 40), (1000, 100, 20),
                                               (1000, 333, 40), (12, 4, 40)])
def test_committee_is_the_smallest_odd_one_whose_colluders_stay_below_the_threshold(n, colluders, bits):
    m = analysis.committee_size(n, colluders, bits)

    def fails(size):  # probability that the colluders on a committee of `size` reach its threshold
        return hypergeom.sf(analysis.majority(size) - 1, n, colluders, size)

    if m == n:  # no smaller committee was safe enough: everyone holds shares
        assert all(fails(size) > 2.0**-bits for size in range(1, n, 2))
    else:
        assert m % 2 == 1 and fails(m) <= 2.0**-bits and (m == 1 or fails(m - 2) > 2.0**-bits)


def test_without_colluders_a_logarithmic_committee():
    assert analysis.committee_size(100, 0, 40) == 2 * 7 + 1
    assert analysis.committee_size(1000, 0, 40) == 2 * 10 + 1
    assert analysis.committee_size(5, 0, 40) == 5  # never more than the cohort


@pytest.mark.parametrize("n,colluders,bits", [(100, 33, 40), (1000, 100, 40), (1000, 10, 20), (60, 20, 10)])
def test_surviving_neighbours_include_an_honest_one_but_with_probability_2_to_minus_sigma(n, colluders, bits):
    m = analysis.min_surviving_neighbours(n, colluders, bits, complete=False)
    share = colluders / n
    if m - 1 < colluders:  # m - 1 neighbours all colluding is unlikely enough, m - 2 would not be
        assert share ** (m - 1) <= 2.0**-bits < share ** (m - 2)
    else:
        assert m == colluders + 1
    assert analysis.min_surviving_neighbours(n, colluders, bits, complete=True) == colluders + 1
    assert analysis.min_surviving_neighbours(n, 0, bits, complete=False) == 1


# ----- announced parameters and the client's policy
def test_parameter_ranges_include_their_edges():
    for ok in (SecAggParams(dropout_bound=0.0, colluder_fraction=0.0, security_bits=1),
               SecAggParams(dropout_bound=0.499, colluder_fraction=0.499, security_bits=128)):
        ok.check()
    for bad, field in ((SecAggParams(dropout_bound=0.5), "dropout bound"), (SecAggParams(dropout_bound=-0.01), "dropout bound"),
                       (SecAggParams(colluder_fraction=0.5), "colluder fraction"),
                       (SecAggParams(colluder_fraction=-0.01), "colluder fraction"),
                       (SecAggParams(security_bits=0), "security bits"), (SecAggParams(security_bits=129), "security bits")):
        with pytest.raises(ConfigError, match=field):
            bad.check()
    with pytest.raises(ConfigError, match="at least one client"):
        SecAggParams().plan(0)


def test_the_plan_follows_the_announced_fractions_and_bound():
    plan = SecAggParams(dropout_bound=0.25, colluder_fraction=0.2, frac_bits=20).plan(41)
    assert (plan.n, plan.colluders, plan.max_dropouts, plan.frac_bits) == (41, 8, 10, 20)
    assert plan.bound == fixedpoint.max_bound(41, 20)
    assert plan.edge_probability == analysis.edge_probability(41 - 8 - 10, 40)
    assert plan.committee_size == min(41, analysis.committee_size(41, 8, 40))
    assert plan.threshold == analysis.majority(plan.committee_size)
    assert SecAggParams(bound=2.5).plan(41).bound == 2.5
    largest = fixedpoint.max_bound(41, 24)
    assert SecAggParams(bound=largest).plan(41).bound == largest  # the largest safe bound is allowed


@pytest.mark.parametrize("field,weaker,why", [("colluder_fraction", 0.3, "colluder fraction 0.3 is below this client's 1/3"),
                                              ("dropout_bound", 0.1, "dropout bound 0.1 is below this client's 0.2"),
                                              ("security_bits", 39, "security of 2^-39 is below this client's 2^-40")])
def test_a_client_names_the_bound_it_finds_too_weak(field, weaker, why):
    policy = SecAggParams()
    why = why.replace("1/3", f"{1 / 3:g}")
    assert SecAggParams(**{field: weaker}).at_least_as_strong_as(policy) == why
    stronger = {"colluder_fraction": 0.4, "dropout_bound": 0.3, "security_bits": 41}[field]
    assert SecAggParams(**{field: stronger}).at_least_as_strong_as(policy) == ""
    assert policy.at_least_as_strong_as(policy) == ""


@pytest.mark.parametrize("bound", [None, 0.75])
def test_parameters_survive_the_payload(bound):
    params = SecAggParams(frac_bits=20, bound=bound, dropout_bound=0.1, colluder_fraction=0.25, security_bits=50)
    assert SecAggParams.from_payload(params.to_payload()) == params


def test_the_server_announces_its_configuration_and_a_client_keeps_its_own_policy():
    config = load_config(None, {"secagg.dropout_bound": 0.3, "secagg.colluder_fraction": 0.1,
                                "secagg.security_bits": 60, "secagg.min_cohort": 5})
    assert from_config(config) == SecAggParams(dropout_bound=0.3, colluder_fraction=0.1, security_bits=60)
    policy = policy_from_config(config)
    assert policy.minimum == from_config(config) and policy.min_cohort == 5 and policy.require_secure is True
    plain = load_config(None, {"federated.secure": False})
    assert policy_from_config(plain).require_secure is False  # unset: follows this configuration's own choice
    insisting = load_config(None, {"federated.secure": False, "secagg.require_secure": True})
    assert policy_from_config(insisting).require_secure is True


def test_the_disconnect_bound_of_the_plan_is_met_for_the_default_parameters():
    for n in (10, 100, 1000):
        plan = SecAggParams().plan(n)
        h = n - plan.colluders - plan.max_dropouts
        if plan.edge_probability < 1.0:
            assert math.log(disconnect_bound(h, plan.edge_probability)) <= -41 * LN2 + 1e-9
        assert plan.min_neighbours >= 1 and np.isfinite(plan.bound)


def test_a_complete_graph_plan_asks_one_more_surviving_neighbour_than_all_colluders():
    """With the complete graph (a small cohort) a survivor must keep more surviving neighbours than there are
    colluders, even where the sparse graph's probabilistic bound would ask fewer (here 40% colluders and 45%
    dropouts: 8 colluders among 22, but (0.36)^8 < 2^-10 would make 8 enough)."""
    plan = SecAggParams(dropout_bound=0.45, colluder_fraction=0.4, security_bits=10).plan(22)
    assert plan.edge_probability == 1.0 and plan.colluders == 8
    assert analysis.min_surviving_neighbours(22, 8, 10, complete=False) == 8  # the bound that must not apply
    assert plan.min_neighbours == 9
