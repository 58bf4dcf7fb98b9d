"""A bounded slice of benchmarks/fuzz.py in CI: every platform parser, the TTS fast path and the
store append fuzzed together on mutated real messages, for a few seconds; and the fuzzer's own
checks catch a parser that raises or a safety net that hides a bug."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from app import platforms
from app.events import error_event
from app.platforms.base import unexpected_error_text

FUZZ_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py"
SLICE_SECONDS = 10.0


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("uplink_fuzz_bench", FUZZ_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_corpus_has_every_platform_and_the_published_samples(fuzz):
    corpus, parsers = fuzz.seeds(per_platform=10)
    assert set(parsers) == {"tts", "tektelic", "akenza", "thingpark", "drogue"}
    assert {seed.platform for seed in corpus} == set(parsers)
    assert any(seed.body == (Path(__file__).parent / "samples" / "tts_up_1.json").read_bytes() for seed in corpus)


def test_a_slice_of_fuzzing_finds_no_failure(fuzz, tmp_path):
    result = fuzz.run(SLICE_SECONDS, seed=20261201, failures_dir=tmp_path)
    assert not result.failures, "\n".join(f"{k}: {n} times; {ex}" for k, (n, ex) in result.failures.items())
    assert result.messages >= 2_000  # the loop really ran (~6,000/s here)
    assert result.rows >= result.messages  # one row per event, at least one event per message
    assert 0 < result.fast_rows < result.rows and 0 < result.error_rows < result.rows


class RaisingParser:
    """A parser whose safety net is missing: parse_or_error itself raises on a JSON object."""

    def parse_or_error(self, topic, payload, properties=None):
        if payload.startswith(b"{"):
            raise KeyError("uplink_message")
        return platforms.get("akenza").parse_or_error(topic, payload, properties)


class BugHidingParser:
    """A parser whose bug the safety net turned into an error row: the fuzzer must still see it."""

    def parse_or_error(self, topic, payload, properties=None):
        events = platforms.get("drogue").parse_or_error(topic, payload, properties)
        if len(payload) % 3 == 0:
            return [error_event("drogue", topic, unexpected_error_text("drogue", TypeError("'NoneType'")))]
        return events


def test_the_fuzzer_reports_a_parser_that_raises_or_hides_a_bug(fuzz, tmp_path):
    result = fuzz.run(
        2.0, seed=5, failures_dir=tmp_path, parsers={"akenza": RaisingParser(), "drogue": BugHidingParser()}
    )
    assert set(result.failures) == {"parse_or_error raised", "a parser raised by mistake"}
    count, example = result.failures["parse_or_error raised"]
    assert count > 0 and "akenza" in example and "KeyError" in example
    assert list(tmp_path.glob("*-akenza.body")) and list(tmp_path.glob("*-drogue.txt"))
