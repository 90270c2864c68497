"""The client's recommendation service (FastAPI): top-N with reasons, feedback stored durably then folded in."""

from __future__ import annotations

import base64
import hmac
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from fedrec.client.page import PAGE
from fedrec.shared.feedback import ID_PATTERN, FeedbackStore, stored_events
from fedrec.shared.errors import FedrecError
from fedrec.shared.recommend import Recommender, event_rating
from fedrec.shared.serving import ITEM_MODEL_FILE, load_recommender

MAX_K = 1000


class FeedbackBody(BaseModel):
    """One feedback event: an explicit rating or an implicit event (see shared.recommend.EVENT_SCALE), about one item."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item: str = Field(min_length=1, max_length=200)
    rating: float | None = Field(None, allow_inf_nan=False)
    event: Literal["click", "purchase", "skip"] | None = None
    timestamp: int | None = Field(None, ge=0, le=10**11, description="Unix seconds; the time of receipt when absent")

    @model_validator(mode="after")
    def _one_kind(self) -> FeedbackBody:
        if (self.rating is None) == (self.event is None):
            raise ValueError("give exactly one of 'rating' (a number on the scale) or 'event' (click, purchase, skip)")
        return self


class Service:
    """The served model and the feedback store of one client's state folder."""

    def __init__(self, state_dir: Path, wait_for_model: bool = False):
        self.state_dir = Path(state_dir)
        self.recommender: Recommender | None = None
        self._model_stamp = self._stamp()
        if self._model_stamp or not wait_for_model:
            # The model first (read-only), so a folder without one gets an error and no new database.
            self.recommender = load_recommender(self.state_dir, stored_events(self.state_dir))
        self.store = FeedbackStore(self.state_dir)
        self._lock = threading.Lock()  # one feedback (store, then fold in) or reload at a time

    def _stamp(self) -> int:
        path = self.state_dir / ITEM_MODEL_FILE
        return path.stat().st_mtime_ns if path.exists() else 0

    def reload_if_newer(self) -> bool:
        """Serve the model a newer round left in the state folder (stored feedback replayed onto it)."""
        stamp = self._stamp()
        if stamp == self._model_stamp:
            return False
        with self._lock:
            self.recommender = load_recommender(self.state_dir, self.store.events())
            self._model_stamp = stamp  # only once loaded: a half-written pair of files is retried next time
        return True

    def watch(self, interval: float) -> None:
        """Reload whenever training leaves a newer model (runs in a daemon thread of `fedrec serve`)."""
        while True:
            time.sleep(interval)
            try:
                if self.reload_if_newer():
                    print(f"fedrec serve: serving the newer model in {self.state_dir}", file=sys.stderr, flush=True)
            except FedrecError as exc:
                print(f"fedrec serve: model not reloaded yet: {exc}", file=sys.stderr, flush=True)

    def current(self) -> Recommender:
        recommender = self.recommender
        if recommender is None:
            raise HTTPException(503, "no model yet: the first federated round has not finished on this client")
        return recommender

    def feedback(self, user: str, body: FeedbackBody) -> dict:
        model = self.current().model
        item = model.index_of.get(body.item)
        if item is None:
            raise HTTPException(422, f"unknown item {body.item!r}: not in this client's catalogue")
        if body.event is not None:
            rating = event_rating(body.event, model.rating_min, model.rating_max)
        else:
            rating = body.rating
            if not model.rating_min <= rating <= model.rating_max:
                raise HTTPException(422, f"rating {rating:g} is outside the scale [{model.rating_min:g}, {model.rating_max:g}]")
        timestamp = body.timestamp if body.timestamp is not None else int(time.time())
        with self._lock:
            event_id = self.store.add(user, body.item, rating, body.event, timestamp)  # on disk before we go on
            start = time.perf_counter()
            recommender = self.current()  # the newest: a reload may have happened since validation
            created = user not in recommender
            recommender.add(user, item, rating)
            fold_in_ms = (time.perf_counter() - start) * 1e3
        return {"stored": event_id, "user": user, "item": body.item, "rating": rating, "event": body.event,
                "timestamp": timestamp, "new_user": created, "fold_in_ms": fold_in_ms}


class TokenCheck:
    """ASGI middleware: every request must carry the token, as `Authorization: Bearer TOKEN` or as the
    password of HTTP Basic authentication (so that a browser can open the page and its requests)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    def _allowed(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() == b"bearer":
            return hmac.compare_digest(value.strip(), self.token)
        if scheme.lower() == b"basic":
            try:
                password = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except ValueError:
                return False
            return hmac.compare_digest(password, self.token)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            if not self._allowed(header):
                response = JSONResponse({"error": "missing or wrong token (Authorization: Bearer TOKEN)"}, 401,
                                        headers={"WWW-Authenticate": 'Basic realm="fedrec"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _reason(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item["type"] == "json_invalid":
            parts.append(f"malformed JSON body (at character {item['loc'][-1]}): {item['ctx'].get('error', '')}")
            continue
        where = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _user(user: str) -> str:
    if not ID_PATTERN.fullmatch(user):
        raise HTTPException(422, f"invalid user id {user!r}: 1-200 characters, no spaces, commas, semicolons, colons")
    return user


def build_app(service: Service, token: str | None = None) -> FastAPI:
    app = FastAPI(title="fedrec client service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _reason(exc)}, 422)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        recommender = service.recommender
        if recommender is None:
            return JSONResponse({"status": "waiting for the first model"}, 503)
        return JSONResponse({"status": "ok", "users": len(recommender.users), "items": len(recommender.model.item_ids)})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/v1/users")
    async def users() -> dict:
        return {"users": service.current().users}

    @app.get("/v1/users/{user}/recommendations")
    async def recommendations(user: str, k: int = Query(10, ge=1, le=MAX_K), explain: bool = False) -> JSONResponse:
        recommender = service.current()
        if _user(user) not in recommender:
            raise HTTPException(404, f"unknown user {user!r}: not one of this client's users (give feedback to create it)")
        # A JSONResponse directly: FastAPI's generic encoding of a returned dict costs more than the ranking.
        return JSONResponse({"user": user, "items": recommender.recommend(user, k, explain)})

    @app.post("/v1/users/{user}/feedback")
    def feedback(user: str, body: FeedbackBody) -> JSONResponse:  # plain def: the fsync runs in a worker thread
        return JSONResponse(service.feedback(_user(user), body))

    if token is not None:
        app.add_middleware(TokenCheck, token=token)
    return app
