"""The `llm` judge: the CCS paper's two-step protocol over an OpenAI-compatible chat API.

Step 1, a few-shot prompt asks for the single concept (one word) that best describes a head's
descriptions; step 2, one prompt per description asks whether it belongs to that concept (1/0).
Temperature 0. Every valid answer is cached on disk by the hash of (model, messages, temperature),
so a re-run, or a run against another server with the same model, makes no HTTP call.

Configuration (constructor arguments win over the environment):
``CCSCLIP_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``), ``CCSCLIP_LLM_MODEL``,
``CCSCLIP_LLM_API_KEY`` (or ``OPENAI_API_KEY``), ``CCSCLIP_LLM_CACHE`` (cache directory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from ccsclip.fileio import atomic_write_json
from ccsclip.profiles.rank.judges.base import Description, JudgeError, Verdict

log = logging.getLogger(__name__)

PROMPT_VERSION = "ccs-llm-v1"

ENV_BASE_URL = "CCSCLIP_LLM_BASE_URL"
ENV_MODEL = "CCSCLIP_LLM_MODEL"
ENV_API_KEY = "CCSCLIP_LLM_API_KEY"
ENV_CACHE = "CCSCLIP_LLM_CACHE"
ENV_OPENAI_BASE_URL = "OPENAI_BASE_URL"
ENV_OPENAI_API_KEY = "OPENAI_API_KEY"

MAX_CONCEPT_WORDS = 3
MAX_CONCEPT_CHARS = 40
_RAW_SHOWN = 300  # characters of a bad answer or response body quoted in an error

Message = dict[str, str]
T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Prompts. Changing any text here changes the answers: bump PROMPT_VERSION (prompt_sha256 in
# describe() catches a forgotten bump, and the cache key changes by itself).

CONCEPT_SYSTEM = (
    "You analyse attention heads of a CLIP vision model. For one head you are given the text "
    "descriptions that best explain what the head responds to. Name the single concept that best "
    "describes what the descriptions have in common: a property (such as colour, shape or "
    "texture), a kind of thing (such as animal or vehicle), a setting (such as location or "
    "weather), and so on. A description that does not fit should not change your answer. "
    "Answer with one lowercase word only, without explanation."
)
CONCEPT_EXAMPLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "a bright red sports car",
            "yellow sunflowers in a field",
            "a wall painted deep blue",
            "an emerald green necklace",
            "a purple umbrella in the rain",
        ),
        "colour",
    ),
    (
        (
            "a tabby cat asleep on a sofa",
            "a horse galloping along a beach",
            "a close-up of a parrot",
            "a photo taken at night",
            "a dog catching a frisbee",
        ),
        "animal",
    ),
    (
        (
            "a snowy mountain village",
            "a crowded street in tokyo",
            "an old wooden chair",
            "a sandy desert at dawn",
            "a tropical island beach",
        ),
        "location",
    ),
)
JUDGEMENT_SYSTEM = (
    "You check whether a text description belongs to a given concept. Answer 1 if the "
    "description clearly expresses the concept and 0 if it does not. Answer with the single "
    "digit 1 or 0 only, without explanation."
)
JUDGEMENT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("colour", "a wall painted deep blue", "1"),
    ("animal", "a photo taken at night", "0"),
    ("location", "a crowded street in tokyo", "1"),
    ("colour", "an old wooden chair", "0"),
)
CONCEPT_CORRECTION = (
    "That answer is not in the required format. Answer with the concept only: one lowercase "
    "word, no punctuation, no explanation."
)
JUDGEMENT_CORRECTION = (
    "That answer is not in the required format. Answer with the single digit 1 or 0 only."
)


def concept_user_message(texts: Sequence[str]) -> str:
    lines = "\n".join(f"{number}. {text}" for number, text in enumerate(texts, start=1))
    return f"Descriptions:\n{lines}\nConcept:"


def judgement_user_message(concept: str, text: str) -> str:
    return f"Concept: {concept}\nDescription: {text}\nAnswer:"


def concept_messages(texts: Sequence[str]) -> list[Message]:
    """Step 1: system instructions, three worked examples, then the head's descriptions."""
    messages: list[Message] = [{"role": "system", "content": CONCEPT_SYSTEM}]
    for example, answer in CONCEPT_EXAMPLES:
        messages.append({"role": "user", "content": concept_user_message(example)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": concept_user_message(texts)})
    return messages


def judgement_messages(concept: str, text: str) -> list[Message]:
    """Step 2, one per description: instructions, four worked examples, then the question."""
    messages: list[Message] = [{"role": "system", "content": JUDGEMENT_SYSTEM}]
    for example_concept, example_text, answer in JUDGEMENT_EXAMPLES:
        messages.append(
            {"role": "user", "content": judgement_user_message(example_concept, example_text)}
        )
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": judgement_user_message(concept, text)})
    return messages


def _prompt_sha256() -> str:
    material = json.dumps(
        [concept_messages(["{descriptions}"]), judgement_messages("{concept}", "{description}")]
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Answer parsing: lenient about decoration, strict about content.

_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_DECORATION = " \t\r\n\"'`*_.,;:!?()[]{}<>"
_LABEL_PREFIX_RE = re.compile(r"^(?:the\s+)?(?:concept|answer|label)(?:\s+is\b|\s*[:=])\s*", re.I)
_WORD = r"[^\W\d_][\w'&/-]*"
_CONCEPT_RE = re.compile(rf"{_WORD}(?: {_WORD})*")
_JUDGEMENT_RE = re.compile(r"^\W*(1|0|yes|no|true|false|y|n)(?![\w])", re.I)
_TRUE_WORDS = {"1", "yes", "true", "y"}


def _first_line(answer: str) -> str:
    text = _THINK_RE.sub("", answer)
    for line in text.splitlines():
        if line.strip(_DECORATION):
            return line.strip()
    return ""


def parse_concept(answer: str) -> str | None:
    """The concept in an answer, lowercased (one word or a short phrase), or None if malformed.

    Accepts decoration models add despite instructions: quotes, markdown, a trailing period,
    'Concept: x', a <think> block. Rejects sentences and empty answers.
    """
    line = _first_line(answer).strip(_DECORATION)
    line = _LABEL_PREFIX_RE.sub("", line).strip(_DECORATION)
    concept = " ".join(line.lower().split())
    if not concept or len(concept) > MAX_CONCEPT_CHARS:
        return None
    if len(concept.split()) > MAX_CONCEPT_WORDS or not _CONCEPT_RE.fullmatch(concept):
        return None
    return concept


def parse_judgement(answer: str) -> bool | None:
    """1/0 (or yes/no, true/false) at the start of an answer; None if it is something else."""
    line = _LABEL_PREFIX_RE.sub("", _first_line(answer).strip(_DECORATION))
    match = _JUDGEMENT_RE.match(line)
    if match is None:
        return None
    return match.group(1).lower() in _TRUE_WORDS


# --------------------------------------------------------------------------------------------


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def default_cache_dir() -> Path:
    """CCSCLIP_LLM_CACHE, else $XDG_CACHE_HOME/ccsclip/llm, else ~/.cache/ccsclip/llm."""
    explicit = _env(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    base = _env("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "ccsclip" / "llm"


def cache_key(model: str, messages: Sequence[Message], temperature: float) -> str:
    """sha256 of what determines the answer; the server's URL does not, so it is left out."""
    material = json.dumps(
        {"model": model, "messages": list(messages), "temperature": temperature},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _shorten(text: str, limit: int = _RAW_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class _Retryable(Exception):
    """An attempt failed in a way worth retrying (transport error, timeout, 429, 5xx)."""

    def __init__(self, reason: str, *, timeout: bool = False, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.wait = wait


class LlmJudge:
    """CCS judge that asks a chat model, per the paper: concept first, then 1/0 per description.

    Args (each None falls back to the environment, see the module docstring):
        base_url: the API root, e.g. ``http://localhost:8000/v1``; requests go to
            ``{base_url}/chat/completions``.
        model, api_key: sent as the body's ``model`` and ``Authorization: Bearer``.
        cache_dir: one JSON file per prompt; ``use_cache=False`` turns the cache off.
        timeout: seconds per HTTP request.
        max_retries: extra attempts after a connection error, timeout, 429 or 5xx, waiting
            ``backoff * 2**k`` seconds (at most ``backoff_max``; a Retry-After header wins).
        malformed_retries: extra attempts when the answer is not a concept / not 1-0; the retry
            shows the model its bad answer and restates the format.
        max_workers: heads judged concurrently by `judge_many`.
    """

    kind = "llm"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        malformed_retries: int = 2,
        max_workers: int = 4,
        temperature: float = 0.0,
    ) -> None:
        base_url = base_url or _env(ENV_BASE_URL, ENV_OPENAI_BASE_URL)
        model = model or _env(ENV_MODEL)
        api_key = api_key or _env(ENV_API_KEY, ENV_OPENAI_API_KEY)
        missing = []
        if not base_url:
            missing.append(
                f"{ENV_BASE_URL} (or {ENV_OPENAI_BASE_URL}) to the API root, "
                "e.g. http://localhost:8000/v1"
            )
        if not model:
            missing.append(f"{ENV_MODEL} to the chat model's name")
        if not api_key:
            missing.append(
                f"{ENV_API_KEY} (or {ENV_OPENAI_API_KEY}) to the API key "
                "(any value for a server without authentication)"
            )
        if missing:
            raise JudgeError("the llm judge is not configured: set " + "; set ".join(missing))
        assert base_url and model and api_key  # for the type checker
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JudgeError(
                f"LLM base URL {base_url!r} is not an http(s) URL; set {ENV_BASE_URL} to e.g. "
                "http://localhost:8000/v1"
            )
        for name, value in (
            ("timeout", timeout),
            ("max_retries", max_retries),
            ("backoff", backoff),
            ("backoff_max", backoff_max),
            ("malformed_retries", malformed_retries),
        ):
            if value < 0:
                raise JudgeError(f"{name} must be >= 0, got {value!r}")
        if max_workers < 1:
            raise JudgeError(f"max_workers must be >= 1, got {max_workers!r}")

        root = base_url.rstrip("/")
        if root.endswith("/chat/completions"):  # a full endpoint pasted as the base URL
            root = root[: -len("/chat/completions")]
        self.base_url = root
        self.url = f"{root}/chat/completions"
        self.model = model
        self._api_key = api_key
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.use_cache = use_cache
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.malformed_retries = int(malformed_retries)
        self.max_workers = int(max_workers)
        self.temperature = float(temperature)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"LlmJudge(model={self.model!r}, base_url={self.base_url!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        """Created on first use, so a fully cached run never opens a connection."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout),
                    headers={"Authorization": f"Bearer {self._api_key}"},
                    limits=httpx.Limits(max_connections=max(self.max_workers, 1) * 2),
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> LlmJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------------------

    def describe(self) -> dict:
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return {
            "kind": self.kind,
            "model": self.model,
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": _prompt_sha256(),
            "temperature": self.temperature,
            "base_url_host": host,
        }

    # -- cache ---------------------------------------------------------------------------------

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.json"

    def _cache_get(self, key: str) -> str | None:
        if not self.use_cache:
            return None
        path = self._cache_path(key)
        try:
            entry = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable LLM cache entry %s: %s", path, error)
            return None
        answer = entry.get("answer") if isinstance(entry, dict) else None
        return answer if isinstance(answer, str) else None

    def _cache_put(self, key: str, messages: Sequence[Message], answer: str) -> None:
        if not self.use_cache:
            return
        entry = {
            "model": self.model,
            "temperature": self.temperature,
            "prompt_version": PROMPT_VERSION,
            "messages": list(messages),
            "answer": answer,
        }
        try:
            atomic_write_json(self._cache_path(key), entry)
        except OSError as error:  # a read-only cache must not lose a finished answer
            log.warning("could not write LLM cache entry under %s: %s", self.cache_dir, error)

    # -- HTTP ----------------------------------------------------------------------------------

    def _post_once(self, messages: Sequence[Message]) -> str:
        body = {"model": self.model, "messages": list(messages), "temperature": self.temperature}
        try:
            response = self._http().post(self.url, json=body)
        except httpx.TimeoutException as error:
            raise _Retryable(
                f"timed out after {self.timeout:g} s ({type(error).__name__})", timeout=True
            ) from error
        except httpx.TransportError as error:
            raise _Retryable(f"{type(error).__name__}: {error}") from error
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(
                f"HTTP {status}: {_shorten(response.text)}",
                wait=_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            hint = {
                401: f"check {ENV_API_KEY} (or {ENV_OPENAI_API_KEY})",
                403: f"check {ENV_API_KEY} (or {ENV_OPENAI_API_KEY}) and its permissions",
                404: f"check {ENV_BASE_URL} (it should end before /chat/completions) and "
                f"{ENV_MODEL}",
            }.get(status, f"check {ENV_MODEL} and the server's logs")
            raise JudgeError(
                f"LLM endpoint {self.url} refused the request with HTTP {status} (not retried): "
                f"{_shorten(response.text)}; {hint}"
            )
        try:
            payload = response.json()
            content = payload["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            raise JudgeError(
                f"LLM endpoint {self.url} answered HTTP {status} with something that is not an "
                f"OpenAI chat completion ({type(error).__name__}): {_shorten(response.text)}; "
                f"check {ENV_BASE_URL}"
            ) from error
        return content if isinstance(content, str) else ""

    def _post(self, messages: Sequence[Message]) -> str:
        """One chat completion, retried with exponential backoff on transient failures."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._post_once(messages)
            except _Retryable as failure:
                if attempt + 1 >= attempts:
                    raise self._unavailable(failure, attempts) from failure
                delay = min(self.backoff_max, self.backoff * (2**attempt))
                if failure.wait is not None:
                    delay = min(self.backoff_max, max(delay, failure.wait))
                log.warning(
                    "LLM request to %s failed (%s); retry %d/%d in %.2f s",
                    self.url,
                    failure.reason,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _unavailable(self, failure: _Retryable, attempts: int) -> JudgeError:
        if failure.timeout:
            return JudgeError(
                f"LLM endpoint {self.url} timed out: no answer within {self.timeout:g} s in "
                f"{attempts} attempts; raise the judge's timeout or check the server "
                f"({ENV_BASE_URL})"
            )
        return JudgeError(
            f"LLM endpoint {self.url} is unavailable after {attempts} attempts "
            f"(last: {failure.reason}); check {ENV_BASE_URL} and that the server is running"
        )

    def _ask(
        self,
        messages: list[Message],
        parse: Callable[[str], T | None],
        correction: str,
        what: str,
        descriptions: Sequence[Description],
    ) -> T:
        """Cached answer, else ask; a malformed answer is shown back to the model and re-asked.

        Only a well-formed answer is cached, under the original prompt's key, so the next run
        finds it whatever corrections it took.
        """
        key = cache_key(self.model, messages, self.temperature)
        cached = self._cache_get(key)
        if cached is not None:
            parsed = parse(cached)
            if parsed is not None:
                return parsed
        conversation = list(messages)
        raws: list[str] = []
        for _ in range(self.malformed_retries + 1):
            raw = self._post(conversation)
            parsed = parse(raw)
            if parsed is not None:
                self._cache_put(key, messages, raw)
                return parsed
            raws.append(raw)
            log.warning("LLM %s answer %r is malformed; asking again", what, _shorten(raw, 80))
            conversation = [
                *messages,
                {"role": "assistant", "content": raw},
                {"role": "user", "content": correction},
            ]
        raise JudgeError(
            f"LLM model {self.model!r} at {self.url} gave no usable {what} in {len(raws)} "
            f"attempts for the head with descriptions {[d.text for d in descriptions]!r}; "
            f"raw answers: {[_shorten(raw) for raw in raws]!r}"
        )

    # -- judging -------------------------------------------------------------------------------

    def label(self, descriptions: Sequence[Description]) -> str:
        """Step 1: the concept (lowercase word or short phrase) the descriptions share."""
        _check_descriptions(descriptions)
        messages = concept_messages([d.text for d in descriptions])
        return self._ask(
            messages,
            parse_concept,
            CONCEPT_CORRECTION,
            "concept (one word or short phrase)",
            descriptions,
        )

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        """Step 2: does each description belong to `concept`? One prompt each."""
        _check_descriptions(descriptions)
        concept = " ".join(concept.lower().split())
        return tuple(
            self._ask(
                judgement_messages(concept, description.text),
                parse_judgement,
                JUDGEMENT_CORRECTION,
                f"1/0 judgement of {description.text!r} against {concept!r}",
                descriptions,
            )
            for description in descriptions
        )

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        concept = self.label(descriptions)
        return Verdict(concept, self.judge_with_concept(descriptions, concept))

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        """Heads are judged concurrently (up to max_workers), results in input order."""
        if self.max_workers == 1 or len(heads) <= 1:
            return [self.judge(head) for head in heads]
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(self.judge, heads))


def _check_descriptions(descriptions: Sequence[Description]) -> None:
    if not descriptions:
        raise JudgeError("the llm judge needs at least one description per head; got none")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a numeric Retry-After header (HTTP-date forms are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
