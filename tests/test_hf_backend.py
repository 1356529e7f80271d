"""The transformers backend on real Gemma 3 architectures (tiny random VLM, real 270M text model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.backend import ChatPrompt, ModelLoadError
from pipeline.hf_backend import TransformersBackend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm(tiny_vlm: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_vlm), device="cpu")


@pytest.fixture(scope="module")
def text_judge(judge_270m: Path) -> TransformersBackend:
    return TransformersBackend(str(judge_270m), device="cpu")


def test_vlm_loads_through_auto_classes(vlm: TransformersBackend) -> None:
    assert type(vlm.model).__name__ == "Gemma3ForConditionalGeneration"
    assert vlm.supports_images and vlm.use_chat_template
    assert vlm.tokenizer.padding_side == "left"


def test_vlm_describes_a_batch_of_images(vlm: TransformersBackend) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    out = vlm.describe(images, ["Describe.", "Describe the scene in detail.", "What happens?"], max_new_tokens=6)
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    # greedy decoding: the same input gives the same text, alone or in a left-padded batch
    alone = vlm.describe(images[1:2], ["Describe the scene in detail."], max_new_tokens=6)
    assert alone[0] == out[1]


def test_text_judge_answer_probs(text_judge: TransformersBackend) -> None:
    assert type(text_judge.model).__name__ == "Gemma3ForCausalLM"
    assert not text_judge.supports_images and not text_judge.use_chat_template  # base model: no template
    prompts = [ChatPrompt("", "Q: Is 2+2=4? Answer yes or no.\nA:"), ChatPrompt("sys", "short")]
    probs = text_judge.answer_probs(prompts, ["0", "1", "2"])
    assert probs.shape == (2, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    # left padding must not change the answer of the shorter prompt
    alone = text_judge.answer_probs(prompts[1:], ["0", "1", "2"])
    assert np.allclose(alone[0], probs[1], atol=1e-4)


def test_text_judge_understands_language(text_judge: TransformersBackend) -> None:
    prompt = ChatPrompt("", "The capital of France is Paris. True or false? Answer:")
    yes, no = text_judge.answer_probs([prompt], [" True", " False"])[0]
    assert yes > no


def test_generate(text_judge: TransformersBackend) -> None:
    (out,) = text_judge.generate([ChatPrompt("", "One, two, three,")], max_new_tokens=4)
    assert "four" in out.lower()


def test_vlm_serves_as_judge_with_its_chat_template(vlm: TransformersBackend) -> None:
    text = vlm.render(ChatPrompt("Be brief.", "Rate it."))
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nRate it.<end_of_turn>\n<start_of_turn>model\n"
    probs = vlm.answer_probs([ChatPrompt("s", "u")], [str(d) for d in range(10)])
    assert probs.shape == (1, 10)


def test_answer_variants(text_judge: TransformersBackend) -> None:
    groups = text_judge.answer_token_ids(["no", "yes"])
    tok = text_judge.tokenizer
    assert {tok.convert_ids_to_tokens(i) for i in groups[1]} >= {"yes", "▁yes", "Yes", "▁Yes"}
    with pytest.raises(ValueError, match="must be one"):
        text_judge.answer_probs([ChatPrompt("", "x")], ["zqxjkvbw", "0"])


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        TransformersBackend(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        TransformersBackend(str(tmp_path))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_a_gpu() -> None:
    from pipeline.hf_backend import resolve_device

    with pytest.raises(ModelLoadError, match="device = 'cuda'"):
        resolve_device("cuda")
