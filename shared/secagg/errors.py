"""Errors raised by secure aggregation; all are FedrecError so the CLI reports them in one line."""

from fedrec.shared.errors import FedrecError


class SecAggError(FedrecError):
    """Base class of secure-aggregation errors."""

    public_reason = "secure-aggregation error"
    """What a client may tell the server about this failure: a kind, never a value or an index of its vector."""

    def public(self) -> str:
        return self.public_reason


class SecAggRangeError(SecAggError):
    """A value cannot be encoded in fixed point without losing the exactness of the sum."""

    public_reason = "range error: a value is outside the agreed secure-aggregation bound"


class SecAggTamperError(SecAggError):
    """A sealed share failed authentication (modified, replayed elsewhere, or wrong key)."""

    def __init__(self, message: str, sender: int = -1, receiver: int = -1, kind: str = ""):
        super().__init__(message)
        self.sender, self.receiver, self.kind = sender, receiver, kind


class SecAggAbort(SecAggError):
    """The round or setup cannot complete; the caller keeps the model unchanged."""


class SecAggRefusal(SecAggError):
    """A client refuses a request that would weaken the privacy of some client's input."""

    def public(self) -> str:  # the reason is about the protocol (cohort, graph, committee), never about data
        return f"refused: {self}"
