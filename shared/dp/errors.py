"""Errors of the DP layer; all are FedrecError so the CLI reports them in one line with exit code 2."""

from fedrec.shared.errors import FedrecError


class DPError(FedrecError):
    """A DP parameter is invalid or a round cannot keep its announced guarantee."""


class BudgetError(DPError):
    """The privacy budget cannot be met (or is spent) with the planned rounds."""
