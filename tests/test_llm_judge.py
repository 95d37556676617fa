"""The `llm` judge against a real (fake) OpenAI-compatible HTTP server, and the majority vote.

The server answers deterministically from the prompt: concept = the vocabulary concept matched by
most descriptions, judgement = 1 when the description contains one of the concept's words. Its
behaviour (slow, flaky, garbage...) is chosen by the request's model name. No HTTP is mocked.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccsclip.profiles.rank.judges.base import Description, JudgeError, MajorityJudge, Verdict
from ccsclip.profiles.rank.judges.llm import (
    CONCEPT_CORRECTION,
    PROMPT_VERSION,
    LlmJudge,
    parse_concept,
    parse_judgement,
)

API_KEY = "test-key-s3cret"
VOCABULARY = {
    "colour": {"red", "blue", "green", "yellow", "crimson", "purple"},
    "animal": {"dog", "cat", "horse", "bird", "parrot"},
    "shape": {"circle", "triangle", "square", "star"},
    "vehicle": {"car", "bus", "truck", "bicycle"},
}
NARROW = {**VOCABULARY, "colour": VOCABULARY["colour"] - {"crimson"}}  # model 'narrow' misses one
GARBAGE = "I am sorry, but as a language model I cannot help with that request today."
ENV_VARS = (
    "CCSCLIP_LLM_BASE_URL",
    "CCSCLIP_LLM_MODEL",
    "CCSCLIP_LLM_API_KEY",
    "CCSCLIP_LLM_CACHE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _last_question(messages: list[dict]) -> str:
    """The latest real prompt (a correction turn is not one)."""
    for message in reversed(messages):
        content = message["content"]
        if message["role"] == "user" and content.startswith(("Descriptions:", "Concept:")):
            return content
    raise AssertionError(f"no question in {messages!r}")


def answer_for(messages: list[dict], vocabulary: dict[str, set[str]]) -> tuple[str, str]:
    """(kind, answer) that a perfectly obedient model with this vocabulary would give."""
    question = _last_question(messages)
    if question.startswith("Descriptions:"):
        texts = re.findall(r"^\d+\. (.*)$", question, flags=re.M)
        counts = {c: sum(bool(_words(t) & words) for t in texts) for c, words in vocabulary.items()}
        best = max(counts.values())
        return "concept", next(c for c, n in counts.items() if n == best) if best else "misc"
    concept = re.search(r"^Concept: (.*)$", question, flags=re.M).group(1)
    text = re.search(r"^Description: (.*)$", question, flags=re.M).group(1)
    return "judgement", "1" if _words(text) & vocabulary.get(concept, set()) else "0"


class FakeLLM:
    """OpenAI-compatible /v1/chat/completions on 127.0.0.1; behaviour keyed on the model name."""

    def __init__(self) -> None:
        self.requests: list[dict] = []  # request bodies, in arrival order
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.calls_by_model: Counter[str] = Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.calls_by_model[body["model"]] += 1
                    call = fake.calls_by_model[body["model"]]
                if self.path != "/v1/chat/completions":
                    return self.reply(404, {"error": {"message": f"no route {self.path}"}})
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self.reply(401, {"error": {"message": "invalid api key"}})
                status, content = fake.behave(body, call)
                if status != 200:
                    return self.reply(status, {"error": {"message": "overloaded"}})
                choice = {"index": 0, "message": {"role": "assistant", "content": content}}
                self.reply(200, {"object": "chat.completion", "choices": [choice]})

            def reply(self, status: int, payload: dict) -> None:
                with fake.lock:
                    fake.statuses.append(status)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def behave(self, body: dict, call: int) -> tuple[int, str]:
        model, messages = body["model"], body["messages"]
        if model == "garbage":
            return 200, GARBAGE
        if model == "slow":
            time.sleep(1.0)
        if model == "down":
            return 503, ""
        if model == "flaky-503" and call <= 2:
            return 503, ""
        if model == "flaky-429" and call <= 2:
            return (429, "") if call == 1 else (502, "")
        kind, answer = answer_for(messages, NARROW if model == "narrow" else VOCABULARY)
        if model == "contrarian" and kind == "concept":
            return 200, "shape"
        if (
            model == "sloppy"
            and kind == "concept"
            and messages[-1]["content"] != CONCEPT_CORRECTION
        ):
            return 200, f"Well, these descriptions all seem to be about {answer} to me."
        if model == "chatty":
            if kind == "concept":
                return 200, f"**{answer.capitalize()}.**\n\nAll of them mention a {answer}."
            return 200, "Yes." if answer == "1" else " No, it does not.\n"
        return 200, answer

    def count(self, model: str | None = None) -> int:
        with self.lock:
            return sum(1 for body in self.requests if model is None or body["model"] == model)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own LLM settings must not leak into (or out of) these tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def make_judge(server: FakeLLM, tmp_path: Path, model: str = "fake", **kwargs) -> LlmJudge:
    options = {
        "base_url": server.base_url,
        "model": model,
        "api_key": API_KEY,
        "cache_dir": tmp_path / "cache",
        "timeout": 5.0,
        "backoff": 0.001,
        "max_retries": 2,
    }
    options.update(kwargs)
    return LlmJudge(**options)


def head(*texts: str) -> list[Description]:
    return [Description(text) for text in texts]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


HEADS = [
    head("a red car", "a blue sky", "a crimson dress", "a green leaf", "a yellow bus"),
    head("a sleeping dog", "a cat on a sofa", "a paper kite", "a horse in a field", "a window"),
    head("a round circle", "a small triangle", "a square tile", "a dog", "a star in the sky"),
]
EXPECTED = [
    Verdict("colour", (True, True, True, True, True)),
    Verdict("animal", (True, True, False, True, False)),
    Verdict("shape", (True, True, True, False, True)),
]
PROMPTS_PER_HEAD = 1 + 5  # one concept prompt, one judgement per description


def test_concepts_and_ccs_over_real_http(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path) as judge:
        assert judge.judge(HEADS[1]) == EXPECTED[1]
        verdicts = judge.judge_many(HEADS)
    assert verdicts == EXPECTED
    assert [v.ccs for v in verdicts] == [5, 3, 4]
    # head 1 was answered from the cache the second time
    assert server.count() == len(HEADS) * PROMPTS_PER_HEAD
    for body in server.requests:
        assert body["model"] == "fake" and body["temperature"] == 0
        roles = [message["role"] for message in body["messages"]]
        assert roles[0] == "system" and roles[-1] == "user" and "assistant" in roles  # few-shot
    concept_prompts = [
        b["messages"][-1]["content"]
        for b in server.requests
        if b["messages"][-1]["content"].startswith("Descriptions:")
    ]
    assert "Descriptions:\n1. a red car\n2. a blue sky\n3. a crimson dress" in concept_prompts[1]


def test_cache_makes_second_run_http_free(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path) as judge:
        first = judge.judge_many(HEADS)
    sent = server.count()
    files = sorted((tmp_path / "cache").glob("*.json"))
    assert len(files) == sent == len(HEADS) * PROMPTS_PER_HEAD
    entry = json.loads(files[0].read_text())
    assert entry["model"] == "fake" and entry["answer"] and API_KEY not in files[0].read_text()

    with make_judge(server, tmp_path) as again:
        assert again.judge_many(HEADS) == first
    assert server.count() == sent  # zero new requests

    # The key ignores the base URL: the same model elsewhere (here: nowhere) is served from cache.
    with make_judge(server, tmp_path, base_url=closed_port_url(), max_retries=0) as moved:
        assert moved.judge_many(HEADS) == first

    with make_judge(server, tmp_path, use_cache=False) as uncached:
        assert uncached.judge(HEADS[0]) == first[0]
    assert server.count() == sent + PROMPTS_PER_HEAD


def test_decorated_answers_are_accepted(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, model="chatty") as judge:
        assert judge.judge_many(HEADS) == EXPECTED
    assert server.count() == len(HEADS) * PROMPTS_PER_HEAD  # no retries were needed


def test_malformed_answer_is_corrected_and_cached(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, model="sloppy") as judge:
        assert judge.judge_many(HEADS) == EXPECTED
    # one extra (correction) request per head's concept prompt
    assert server.count() == len(HEADS) * (PROMPTS_PER_HEAD + 1)
    corrections = [b for b in server.requests if b["messages"][-1]["content"] == CONCEPT_CORRECTION]
    assert len(corrections) == len(HEADS)
    assert corrections[0]["messages"][-2]["content"].startswith("Well, these descriptions")
    with make_judge(server, tmp_path, model="sloppy") as again:
        assert again.judge_many(HEADS) == EXPECTED
    assert server.count() == len(HEADS) * (PROMPTS_PER_HEAD + 1)


def test_garbage_answers_are_retried_then_reported(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, model="garbage", malformed_retries=2) as judge:
        with pytest.raises(JudgeError) as caught:
            judge.judge(HEADS[0])
    message = str(caught.value)
    assert GARBAGE in message
    assert "a crimson dress" in message and "concept" in message
    assert server.count() == 3
    assert not list((tmp_path / "cache").glob("*.json"))  # a malformed answer is never cached


def test_timeout_is_retried_then_reported(server: FakeLLM, tmp_path: Path) -> None:
    start = time.monotonic()
    with make_judge(server, tmp_path, model="slow", timeout=0.2, max_retries=2) as judge:
        with pytest.raises(JudgeError, match="timed out") as caught:
            judge.judge(HEADS[0])
    assert time.monotonic() - start < 5
    assert server.count() == 3
    assert server.base_url in str(caught.value)


@pytest.mark.parametrize(
    ("model", "failures"), [("flaky-503", [503, 503]), ("flaky-429", [429, 502])]
)
def test_transient_errors_are_retried(
    server: FakeLLM, tmp_path: Path, model: str, failures: list[int]
) -> None:
    with make_judge(server, tmp_path, model=model, max_retries=2) as judge:
        assert judge.judge(HEADS[0]) == EXPECTED[0]
    assert server.statuses[:2] == failures
    assert server.count() == PROMPTS_PER_HEAD + 2


def test_persistent_5xx_names_the_endpoint(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, model="down", max_retries=3) as judge:
        with pytest.raises(JudgeError) as caught:
            judge.judge(HEADS[0])
    message = str(caught.value)
    assert "503" in message and server.base_url in message and "CCSCLIP_LLM_BASE_URL" in message
    assert server.count() == 4


def test_unauthorised_is_not_retried(server: FakeLLM, tmp_path: Path) -> None:
    with make_judge(server, tmp_path, api_key="wrong-key", max_retries=3) as judge:
        with pytest.raises(JudgeError) as caught:
            judge.judge(HEADS[0])
    message = str(caught.value)
    assert "401" in message and "CCSCLIP_LLM_API_KEY" in message and "wrong-key" not in message
    assert server.count() == 1


def test_wrong_path_is_not_retried(server: FakeLLM, tmp_path: Path) -> None:
    base = server.base_url.removesuffix("/v1")  # forgot the /v1
    with make_judge(server, tmp_path, base_url=base, max_retries=3) as judge:
        with pytest.raises(JudgeError, match="404") as caught:
            judge.judge(HEADS[0])
    assert "CCSCLIP_LLM_BASE_URL" in str(caught.value)
    assert server.count() == 1


def test_endpoint_down_names_url(tmp_path: Path) -> None:
    url = closed_port_url()
    judge = LlmJudge(base_url=url, model="fake", api_key=API_KEY, cache_dir=tmp_path, backoff=0.001)
    with judge, pytest.raises(JudgeError) as caught:
        judge.judge(HEADS[0])
    message = str(caught.value)
    assert f"{url}/chat/completions" in message and "CCSCLIP_LLM_BASE_URL" in message


def test_missing_configuration_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(JudgeError) as caught:
        LlmJudge()
    message = str(caught.value)
    for name in ("CCSCLIP_LLM_BASE_URL", "CCSCLIP_LLM_MODEL", "CCSCLIP_LLM_API_KEY"):
        assert name in message
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with pytest.raises(JudgeError) as caught:
        LlmJudge()
    assert "CCSCLIP_LLM_MODEL" in str(caught.value)
    assert "CCSCLIP_LLM_BASE_URL" not in str(caught.value)
    with pytest.raises(JudgeError, match="not an http"):
        LlmJudge(base_url="localhost:8000", model="m", api_key="k")


def test_environment_configuration_and_describe(
    server: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCSCLIP_LLM_BASE_URL", server.base_url + "/")
    monkeypatch.setenv("CCSCLIP_LLM_MODEL", "fake")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("CCSCLIP_LLM_CACHE", str(tmp_path / "env-cache"))
    with LlmJudge(backoff=0.001) as judge:
        assert judge.judge(HEADS[2]) == EXPECTED[2]
        identity = judge.describe()
    assert len(list((tmp_path / "env-cache").glob("*.json"))) == PROMPTS_PER_HEAD
    port = server.base_url.split(":")[2].split("/")[0]
    assert identity["kind"] == "llm" and identity["model"] == "fake"
    assert identity["prompt_version"] == PROMPT_VERSION
    assert identity["base_url_host"] == f"127.0.0.1:{port}"
    assert API_KEY not in json.dumps(identity) and API_KEY not in repr(judge)


MIXED = head("a red car", "a blue sky", "a crimson dress", "a green leaf", "a sleeping dog")


def test_majority_of_three_llm_judges(server: FakeLLM, tmp_path: Path) -> None:
    judges = [make_judge(server, tmp_path, model=m) for m in ("fake", "narrow", "contrarian")]
    individual = [judge.judge(MIXED) for judge in judges]
    assert [v.concept for v in individual] == ["colour", "colour", "shape"]
    assert individual[1].consistent == (True, True, False, True, False)  # narrow misses crimson

    majority = MajorityJudge(judges)
    verdict = majority.judge(MIXED)
    # 'crimson': fake yes, narrow no, contrarian (re-asked about 'colour') yes -> yes
    assert verdict == Verdict("colour", (True, True, True, True, False))
    assert majority.judge_many([MIXED, HEADS[1]]) == [verdict, EXPECTED[1]]
    reasked = [
        b["messages"][-1]["content"]
        for b in server.requests
        if b["model"] == "contrarian" and b["messages"][-1]["content"].startswith("Concept: colour")
    ]
    assert len(reasked) == len(MIXED)
    assert [d["model"] for d in majority.describe()["judges"]] == ["fake", "narrow", "contrarian"]
    for judge in judges:
        judge.close()


class _NoReask:
    """A judge without judge_with_concept: it must vote False when outvoted on the label."""

    kind = "llm"

    def __init__(self, inner: LlmJudge) -> None:
        self.inner = inner

    def describe(self) -> dict:
        return self.inner.describe()

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        return self.inner.judge(descriptions)

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        return [self.judge(h) for h in heads]


def test_majority_judge_without_reask_votes_false(server: FakeLLM, tmp_path: Path) -> None:
    judges = [
        make_judge(server, tmp_path, model="fake"),
        make_judge(server, tmp_path, model="narrow"),
        _NoReask(make_judge(server, tmp_path, model="contrarian")),
    ]
    verdict = MajorityJudge(judges).judge(MIXED)
    assert verdict == Verdict("colour", (True, True, False, True, False))


class _Fixed:
    """An offline stand-in judge with a fixed answer, for the vote's tie rules."""

    kind = "tags"

    def __init__(self, concept: str, flags: Sequence[bool], reask: bool | None = None) -> None:
        self.verdict = Verdict(concept, tuple(flags))
        self.reask = reask

    def describe(self) -> dict:
        return {"kind": self.kind, "concept": self.verdict.concept}

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        return self.verdict

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        return [self.verdict for _ in heads]

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        return tuple(bool(self.reask) for _ in descriptions)


def test_majority_ties_and_errors() -> None:
    two = head("x", "y")
    # three different labels: the first judge's wins; the others are re-asked about it
    judges = [_Fixed("Texture", [True, False], reask=None), _Fixed("colour", [1, 1], True)]
    judges.append(_Fixed("shape", [0, 0], reask=False))
    assert MajorityJudge(judges).judge(two) == Verdict("texture", (True, False))
    # labels compare case-insensitively; a 2-2 tie goes to the earliest judge among the tied
    judges = [_Fixed("misc", [1, 1]), _Fixed("colour", [1, 0]), _Fixed("Colour", [1, 1])]
    judges += [_Fixed("shape", [0, 0]), _Fixed("shape", [0, 0])]
    assert MajorityJudge(judges).judge(two).concept == "colour"
    with pytest.raises(JudgeError, match="at least one"):
        MajorityJudge([])
    with pytest.raises(JudgeError, match="one per description"):
        MajorityJudge([_Fixed("colour", [True])]).judge(two)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("colour", "colour"),
        ("  Colour.\n", "colour"),
        ('"Animal"', "animal"),
        ("**Texture**\n\nBecause all of them mention surfaces.", "texture"),
        ("Concept: weather", "weather"),
        ("The concept is vehicle.", "vehicle"),
        ("<think>hmm, mostly colours</think>\ncolor", "color"),
        ("art style", "art style"),
        ("concept art", "concept art"),
        ("", None),
        ("I think these are all about colors and shapes", None),
        ("42", None),
    ],
)
def test_parse_concept(answer: str, expected: str | None) -> None:
    assert parse_concept(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("1", True),
        (" 0 ", False),
        ("1.", True),
        ("Yes", True),
        ("no.", False),
        ("Answer: 1", True),
        ("**0**", False),
        ("True", True),
        ("No, it does not.", False),
        ("10", None),
        ("maybe", None),
        ("not really", None),
        ("", None),
    ],
)
def test_parse_judgement(answer: str, expected: bool | None) -> None:
    assert parse_judgement(answer) == expected
