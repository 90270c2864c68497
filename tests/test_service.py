"""`fedrec serve` as a real uvicorn process on 127.0.0.1, spoken to over HTTP, killed with SIGKILL and restarted."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedrec.shared import processes
from fedrec.shared.cli import main
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.feedback import stored_events
from fedrec.shared.recommend import ItemModel
from fedrec.shared.serving import save_snapshot

N_ITEMS, FACTORS, N_USERS = 400, 8, 30
TOKEN = "s3cret-token-for-tests-0123456789"


def fedrec(*args) -> list[str]:
    return [sys.executable, "-m", "fedrec.shared.cli", *map(str, args)]


@pytest.fixture(scope="module")
def model_and_ratings():
    rng = np.random.default_rng(42)
    known = np.ones(N_ITEMS, dtype=bool)
    known[-10:] = False
    model = ItemModel(rng.normal(0, 0.4, (N_ITEMS, FACTORS)), rng.normal(0, 0.3, N_ITEMS), 3.6,
                      np.array([f"m{j}" for j in range(N_ITEMS)]), known, 0.1, 0.01, 1.0, 5.0)
    users, items = [], []
    for user in range(N_USERS):
        count = int(rng.integers(4, 40))
        users += [user] * count
        items += rng.choice(N_ITEMS, size=count, replace=False).tolist()
    values = rng.integers(1, 6, len(users)).astype(float)
    ratings = Ratings(np.array(users), np.array(items), values, None, np.array([f"u{k}" for k in range(N_USERS)]),
                      model.item_ids, 1.0, 5.0)
    return model, ratings


@pytest.fixture
def state_dir(tmp_path, model_and_ratings):
    folder = tmp_path / "client-state"
    folder.mkdir()
    save_snapshot(folder, *model_and_ratings)
    return folder


class Service:
    """`fedrec serve` on a random free port of 127.0.0.1; always stopped by the fixture."""

    def __init__(self, state_dir: Path, *extra: str):
        self.state_dir, self.extra, self.process = state_dir, extra, None

    def start(self) -> Service:
        self.port = processes.free_port()
        self.process = processes.start(fedrec("serve", "--state-dir", self.state_dir, "--port", self.port, *self.extra),
                                       log_file=self.state_dir.parent / "serve.log")
        assert processes.wait_for_port("127.0.0.1", self.port, 60, self.process), self.log()
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def log(self) -> str:
        path = self.state_dir.parent / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, grace=5.0)


@pytest.fixture
def serve(state_dir):
    started = []

    def start(*extra: str) -> Service:
        service = Service(state_dir, *extra).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def user_ratings(ratings: Ratings, user: str) -> tuple[np.ndarray, np.ndarray]:
    mine = ratings.user_ids[ratings.users] == user
    return ratings.items[mine], ratings.values[mine]


def brute_force(model: ItemModel, items: np.ndarray, values: np.ndarray) -> list[tuple[str, float]]:
    """Every candidate scored one by one, from an augmented least-squares solve of the user's loss."""
    used = model.known[items]
    design = np.column_stack([model.q[items[used]], np.ones(used.sum())])
    target = values[used] - model.mu - model.bi[items[used]]
    ridge = np.sqrt(used.sum() * np.array([model.reg] * FACTORS + [model.bias_reg]))
    solution = np.linalg.lstsq(np.vstack([design, np.diag(ridge)]), np.concatenate([target, np.zeros(FACTORS + 1)]),
                               rcond=None)[0]
    p, bu = solution[:FACTORS], solution[FACTORS]
    rated = set(items.tolist())
    scored = [(str(model.item_ids[i]), model.mu + bu + model.bi[i] + float(model.q[i] @ p))
              for i in range(N_ITEMS) if model.known[i] and i not in rated]
    return sorted(scored, key=lambda pair: -pair[1])


def test_recommendations_exclude_rated_items_and_match_a_brute_force_ranking(serve, model_and_ratings):
    model, ratings = model_and_ratings
    service = serve()
    for user in ("u0", "u7", "u19"):
        items, values = user_ratings(ratings, user)
        rated = {str(model.item_ids[i]) for i in items}
        for k in (10, 1000):  # the top, and every candidate in order
            reply = httpx.get(f"{service.url}/v1/users/{user}/recommendations", params={"k": k})
            assert reply.status_code == 200, reply.text
            got = [(row["item"], row["score"]) for row in reply.json()["items"]]
            candidates = brute_force(model, items, values)
            expected = candidates[:k]
            assert len(got) == min(k, len(candidates)) and rated.isdisjoint(item for item, _ in got)
            assert [item for item, _ in got] == [item for item, _ in expected]
            assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-9)
    assert httpx.get(f"{service.url}/v1/users/nobody/recommendations").status_code == 404


def test_explanation_parts_add_up_to_the_score(serve, model_and_ratings):
    model, ratings = model_and_ratings
    service = serve()
    reply = httpx.get(f"{service.url}/v1/users/u3/recommendations", params={"k": 10, "explain": "true"})
    items, _ = user_ratings(ratings, "u3")
    rated = {str(model.item_ids[i]) for i in items}
    for row in reply.json()["items"]:
        why = row["explanation"]
        assert why["because_you_rated"] and {r["item"] for r in why["because_you_rated"]} <= rated
        parts = why["global_mean"] + why["user_bias"] + why["item_bias"] + why["other_rated_items"]
        parts += sum(reason["contribution"] for reason in why["because_you_rated"])
        assert parts == pytest.approx(row["score"], abs=1e-9)
        assert why["item_bias"] == pytest.approx(model.bi[model.index_of[row["item"]]])
        for reason in why["because_you_rated"]:
            assert reason["similarity"] * reason["liking"] == pytest.approx(reason["contribution"], abs=1e-12)


def test_feedback_changes_the_next_recommendations_and_creates_new_users(serve, model_and_ratings):
    model, ratings = model_and_ratings
    service = serve()
    before = httpx.get(f"{service.url}/v1/users/u5/recommendations", params={"k": 10}).json()["items"]
    top = before[0]["item"]
    reply = httpx.post(f"{service.url}/v1/users/u5/feedback", json={"item": top, "rating": 1.0})
    assert reply.status_code == 200 and reply.json()["stored"] >= 1
    after = httpx.get(f"{service.url}/v1/users/u5/recommendations", params={"k": 10}).json()["items"]
    assert top not in [row["item"] for row in after]  # rated now, so excluded
    items, values = user_ratings(ratings, "u5")
    expected = brute_force(model, np.append(items, model.index_of[top]), np.append(values, 1.0))[:10]
    assert [row["item"] for row in after] == [item for item, _ in expected]
    assert np.allclose([row["score"] for row in after], [score for _, score in expected], atol=1e-9)
    # A new user: created by the first feedback (an implicit event), then served.
    assert httpx.get(f"{service.url}/v1/users/newcomer/recommendations").status_code == 404
    created = httpx.post(f"{service.url}/v1/users/newcomer/feedback", json={"item": "m1", "event": "purchase"})
    assert created.status_code == 200 and created.json()["new_user"] is True and created.json()["rating"] == 5.0
    fresh = httpx.get(f"{service.url}/v1/users/newcomer/recommendations", params={"k": 5}).json()["items"]
    expected = brute_force(model, np.array([1]), np.array([5.0]))[:5]
    assert [row["item"] for row in fresh] == [item for item, _ in expected]


BAD_BODIES = [
    ({"item": "no-such-item", "rating": 4}, "unknown item"),
    ({"item": "m1", "rating": 7}, "outside the scale"),
    ({"item": "m1", "rating": 0.5}, "outside the scale"),
    ({"item": "m1", "rating": "4"}, "rating"),
    ({"item": "m1", "rating": True}, "rating"),
    ({"item": "m1", "rating": 4, "event": "click"}, "exactly one"),
    ({"item": "m1"}, "exactly one"),
    ({"item": "m1", "event": "like"}, "event"),
    ({"item": "m1", "rating": 4, "colour": "red"}, "colour"),
    ({"item": "m1", "rating": 4, "timestamp": -5}, "timestamp"),
    ({"item": "m1", "rating": 4, "timestamp": 10**30}, "timestamp"),
    ({"item": "m1", "rating": 4, "timestamp": 1.5}, "timestamp"),
    ({"item": "", "rating": 4}, "item"),
    ([1, 2, 3], "body"),
]


def test_bad_bodies_get_a_4xx_with_the_reason_and_store_nothing(serve, state_dir):
    service = serve()
    before = httpx.get(f"{service.url}/v1/users/u2/recommendations", params={"k": 20}).json()
    url = f"{service.url}/v1/users/u2/feedback"
    for body, reason in BAD_BODIES:
        reply = httpx.post(url, json=body)
        assert 400 <= reply.status_code < 500 and reason in reply.json()["error"], (body, reply.text)
    for raw in (b'{"item": "m1", "rating": 4', b'{"item": "m1", "rating": NaN}', b"", b"\xff\xfe"):
        reply = httpx.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= reply.status_code < 500 and reply.json()["error"], (raw, reply.text)
    reply = httpx.post(f"{service.url}/v1/users/bad,user/feedback", json={"item": "m1", "rating": 4})
    assert reply.status_code == 422 and "invalid user id" in reply.json()["error"]
    assert stored_events(state_dir) == []
    assert httpx.get(f"{service.url}/v1/users/u2/recommendations", params={"k": 20}).json() == before
    assert httpx.get(f"{service.url}/v1/users/bad,user/recommendations").status_code == 422


def test_a_killed_and_restarted_service_has_every_acknowledged_event(serve, state_dir):
    service = serve()
    acknowledged: list[dict] = []
    stop = threading.Event()

    def post(worker: int) -> None:
        with httpx.Client(base_url=service.url, timeout=5.0) as client:
            n = 0
            while not stop.is_set():
                body = {"item": f"m{(worker * 97 + n) % 390}", "rating": float(1 + n % 5)}
                try:
                    reply = client.post(f"/v1/users/load{worker}/feedback", json=body)
                except httpx.HTTPError:
                    return  # the service died mid-request: not acknowledged
                if reply.status_code == 200:
                    acknowledged.append(reply.json())
                n += 1

    workers = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    service.kill9()  # mid-load: requests are in flight
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert len(acknowledged) >= 60
    stored = {row[0]: row[1:4] for row in stored_events(state_dir)}
    for ack in acknowledged:
        assert stored.get(ack["stored"]) == (ack["user"], ack["item"], ack["rating"]), ack
    restarted = serve()
    last = {}
    for ack in sorted(acknowledged, key=lambda a: a["stored"]):
        last[(ack["user"], ack["item"])] = ack
    user = acknowledged[-1]["user"]
    rated = {item for (who, item) in last if who == user}
    reply = httpx.get(f"{restarted.url}/v1/users/{user}/recommendations", params={"k": 1000}).json()
    assert rated.isdisjoint(row["item"] for row in reply["items"])
    assert len(reply["items"]) == N_ITEMS - 10 - len({item for item in rated if int(item[1:]) < N_ITEMS - 10})


def test_the_page_loads_and_its_form_works_over_http(serve, model_and_ratings):
    model, _ = model_and_ratings
    service = serve()
    page = httpx.get(service.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert not re.search(r"(src|href)\s*=|https?://|@import", html)  # no external assets
    assert 'id="pick"' in html and 'id="feedback"' in html and "explain=true" in html
    template = re.search(r'data-feedback-url="([^"]+)"', html).group(1)
    users = httpx.get(service.url + "/v1/users").json()["users"]  # the page's user picker
    assert "u4" in users
    # What the page's JS sends: JSON to the form's URL, then it asks for recommendations with reasons.
    shown = httpx.get(f"{service.url}/v1/users/u4/recommendations", params={"k": 10, "explain": "true"}).json()["items"]
    item = shown[0]["item"]
    reply = httpx.post(service.url + template.replace("{user}", "u4"), json={"item": item, "event": "skip"},
                       headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and reply.json()["rating"] == 2.0
    again = httpx.get(f"{service.url}/v1/users/u4/recommendations", params={"k": 10, "explain": "true"}).json()["items"]
    assert item not in [row["item"] for row in again]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's script")
def test_the_pages_own_script_works_against_the_service(serve, state_dir, tmp_path):
    service = serve()
    page = tmp_path / "page.html"
    page.write_text(httpx.get(service.url + "/").text)
    done = subprocess.run(["node", str(Path(__file__).with_name("page_harness.js")), service.url, str(page)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    user = shown["users"][0]
    assert user == "u0" and len(shown["before"]) == 10
    first = shown["before"][0][1]
    assert "your tendency" in shown["before"][0][3] and f"{first}: rating 5" in shown["status"]
    assert first not in [row[1] for row in shown["after"]]  # rated through the page, so no longer recommended
    assert [row[2:4] for row in stored_events(state_dir)] == [(first, 5.0)]
    assert "unknown item 'no-such-item'" in shown["error"][0] and shown["error"][1] == "err"


def test_token_is_checked_on_every_request(serve, state_dir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    service = serve("--token-file", token_file)
    for path in ("/", "/healthz", "/v1/users", "/v1/users/u1/recommendations", "/nowhere"):
        assert httpx.get(service.url + path).status_code == 401
        assert httpx.get(service.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    reply = httpx.post(service.url + "/v1/users/u1/feedback", json={"item": "m1", "rating": 3})
    assert reply.status_code == 401 and stored_events(state_dir) == []
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(service.url + "/healthz", headers=bearer).json()["status"] == "ok"
    basic = {"Authorization": "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()}
    assert httpx.get(service.url + "/", headers=basic).status_code == 200  # a browser's login prompt
    assert httpx.post(service.url + "/v1/users/u1/feedback", json={"item": "m1", "rating": 3}, headers=bearer).status_code == 200


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(state_dir, tmp_path, capsys):
    short = tmp_path / "short"
    short.write_text("abc")
    cases = {"--host 0.0.0.0: listening beyond this machine needs --token-file": ["--host", "0.0.0.0"],
             "at least 16 characters": ["--token-file", short], "--port 70000": ["--port", "70000"],
             "cannot read it": ["--token-file", tmp_path / "missing"]}
    for message, extra in cases.items():  # in process: these fail before uvicorn would start
        assert main(["serve", "--state-dir", str(state_dir), *map(str, extra)]) == 2
        assert message in capsys.readouterr().err
    assert main(["serve", "--state-dir", str(tmp_path / "empty")]) == 2
    assert "item-model.npz not found" in capsys.readouterr().err
    assert not (state_dir / "feedback.sqlite").exists() and not (tmp_path / "empty").exists()


def test_recommend_command_prints_the_same_ranking(state_dir, model_and_ratings, capsys):
    model, ratings = model_and_ratings
    done = subprocess.run(fedrec("recommend", "--state-dir", state_dir, "--user", "u0", "--top", "5", "--explain"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line[:4].strip().isdigit()]
    items, values = user_ratings(ratings, "u0")
    assert [line[1] for line in lines] == [item for item, _ in brute_force(model, items, values)[:5]]
    assert re.search(r"mean [\d.]+, your tendency [-+][\d.]+, item popularity [-+][\d.]+; (un)?like m\d+ \(you gave", done.stdout)
    assert main(["recommend", "--state-dir", str(state_dir), "--user", "ghost"]) == 2
    assert "not one of the 30 users" in capsys.readouterr().err
