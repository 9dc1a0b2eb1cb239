"""Encoders on real weights: shapes, meaning, determinism, and the content-addressed cache."""

from __future__ import annotations

import numpy as np
import pytest

from aar.errors import AarError
from aar.models.cache import features_path, get_features, has_features, put_features
from aar.models.registry import ENCODERS, parse_encoder

TEXTS = [
    "a warm, funny and moving film",
    "a delightful, touching and hilarious movie",
    "the stock market fell sharply on tuesday",
]


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


@pytest.mark.parametrize(("name", "dim"), [("l3", 384), ("minilm", 384), ("smollm", 576)])
def test_encoder_gives_meaningful_features(name: str, dim: int) -> None:
    seen: list[int] = []
    arr = get_features(name, TEXTS, progress=seen.append)
    assert arr.shape == (3, dim) and arr.dtype == np.float32 and np.isfinite(arr).all()
    # paraphrases are closer to each other than to an unrelated sentence (Euclidean: a
    # causal LM's mean states share one huge direction, so cosines are all near 1)
    assert _dist(arr[0], arr[1]) < 0.85 * _dist(arr[0], arr[2])
    assert has_features(name, TEXTS)


def test_rows_follow_input_order_whatever_the_batching() -> None:
    texts = [f"review number {i} " + "long " * (i % 7) for i in range(70)]
    arr = get_features("l3", texts)
    single = get_features("l3", [texts[42]])
    assert np.allclose(arr[42], single[0], atol=1e-4)


def test_cache_is_content_addressed_and_survives_damage() -> None:
    first = get_features("l3", TEXTS)
    path = features_path("l3", TEXTS)
    assert path.exists()
    assert features_path("l3", TEXTS[:2]) != path != features_path("minilm", TEXTS)
    path.write_bytes(b"not a numpy file")  # a torn write must be recomputed, not trusted
    again = get_features("l3", TEXTS)
    assert np.allclose(first, again, atol=1e-5)


def test_precomputed_encoders_only_read_what_a_dataset_shipped() -> None:
    texts = ["shipped one", "shipped two"]
    put_features("syn_weak", texts, np.ones((2, 4)))
    assert get_features("syn_weak", texts).shape == (2, 4)
    with pytest.raises(AarError, match="shipped"):
        get_features("syn_weak", ["never shipped"])
    with pytest.raises(AarError, match="does not fit"):
        put_features("syn_weak", texts, np.ones((3, 4)))


def test_bad_encoder_references_are_clear_errors() -> None:
    with pytest.raises(AarError, match="unknown encoder"):
        parse_encoder("l4")
    with pytest.raises(AarError, match="takes no argument"):
        parse_encoder("l3:x")
    with pytest.raises(AarError, match="needs an argument"):
        parse_encoder("hf")
    assert parse_encoder("hf:org/model").name == "hf:org/model"
    assert {"l3", "minilm", "mpnet", "smollm"} <= set(ENCODERS.names())


def test_hf_encoder_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AarError, match="could not load hf model"):
        get_features("hf:aar-test/does-not-exist", ["x"])


def test_interrupted_encoding_resumes_from_its_last_checkpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import aar.models.cache as cache

    monkeypatch.setattr(cache, "CHUNK", 8)
    texts = [f"resumable text {i} " + "word " * (i % 5) for i in range(20)]
    straight = get_features("l3", texts)
    features_path("l3", texts).unlink()

    calls: list[int] = []

    def interrupt_in_second_chunk(k: int) -> None:
        calls.append(k)
        if sum(calls) > 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_features("l3", texts, progress=interrupt_in_second_chunk)
    partial = features_path("l3", texts).with_suffix(".partial.npy")
    assert np.load(partial).shape == (8, 384) and not has_features("l3", texts)

    seen: list[int] = []
    resumed = get_features("l3", texts, progress=seen.append)
    assert seen[0] == 8 and sum(seen) == 20  # the first chunk was not encoded again
    assert np.array_equal(resumed, straight) and not partial.exists()
