"""The transformers models on real Gemma 3 architectures (tiny random VLM, real 270M text model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    ExplainRequest,
    ModelLoadError,
    ScoreRequest,
    ScoreResult,
)
from pipeline.judge import JudgeSettings, judge_prompt, probe_request
from pipeline.prompts import PROBE_PROMPT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm(tiny_vlm: Path) -> TransformersModel:
    return TransformersModel(str(tiny_vlm), device="cpu")


@pytest.fixture(scope="module")
def text_judge(judge_270m: Path) -> TransformersModel:
    return TransformersModel(str(judge_270m), device="cpu")


def describe(model: TransformersModel, images: Sequence[np.ndarray], prompts: Sequence[str], n: int) -> list[str]:
    batch = [model.prepare(DescribeRequest(im, p, n)) for im, p in zip(images, prompts, strict=True)]
    return [r.text for r in model.describe(batch, n)]


def score(
    model: TransformersModel, prompts: Sequence[ChatPrompt], answers: Sequence[str], layers: Sequence[int] = ()
) -> list[ScoreResult]:
    batch = [model.prepare(ScoreRequest(p, tuple(answers), tuple(layers))) for p in prompts]
    return model.score(batch, answers, layers)


def probs(model: TransformersModel, prompts: Sequence[ChatPrompt], answers: Sequence[str]) -> np.ndarray:
    return np.stack([r.probs for r in score(model, prompts, answers)])


def test_vlm_loads_through_auto_classes(vlm: TransformersModel) -> None:
    assert type(vlm.model).__name__ == "Gemma3ForConditionalGeneration"
    assert vlm.info.images and vlm.use_chat_template
    assert vlm.tokenizer.padding_side == "left"


def test_vlm_describes_a_batch_of_images(vlm: TransformersModel) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    out = describe(vlm, images, ["Describe.", "Describe the scene in detail.", "What happens?"], 6)
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    # greedy decoding: the same input gives the same text, alone or in a left-padded batch
    alone = describe(vlm, images[1:2], ["Describe the scene in detail."], 6)
    assert alone[0] == out[1]


async def test_the_engine_prepares_off_the_model_thread_with_the_same_results(vlm: TransformersModel) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(4)]
    direct = describe(vlm, images, ["Describe."] * 4, 6)
    for ahead in (True, False):
        with BatchingEngine(vlm, max_batch=4, max_wait_ms=200, prepare_ahead=ahead) as engine:
            import asyncio

            got = await asyncio.gather(*(engine.describe(DescribeRequest(im, "Describe.", 6)) for im in images))
        assert [g.text for g in got] == direct
        assert (engine.stats.prepare_on_model_thread_s > 0) is not ahead


def test_text_judge_answer_probs(text_judge: TransformersModel) -> None:
    assert type(text_judge.model).__name__ == "Gemma3ForCausalLM"
    assert not text_judge.info.images and not text_judge.use_chat_template  # base model: no template
    prompts = [ChatPrompt("", "Q: Is 2+2=4? Answer yes or no.\nA:"), ChatPrompt("sys", "short")]
    p = probs(text_judge, prompts, ["0", "1", "2"])
    assert p.shape == (2, 3)
    assert np.allclose(p.sum(axis=1), 1.0)
    # padding must not change the answer of the shorter prompt
    alone = probs(text_judge, prompts[1:], ["0", "1", "2"])
    assert np.allclose(alone[0], p[1], atol=1e-4)


def test_text_judge_understands_language(text_judge: TransformersModel) -> None:
    prompt = ChatPrompt("", "The capital of France is Paris. True or false? Answer:")
    yes, no = probs(text_judge, [prompt], [" True", " False"])[0]
    assert yes > no


def test_explain_generates(text_judge: TransformersModel) -> None:
    request = ExplainRequest(ChatPrompt("", "One, two, three,"), 4)
    (out,) = text_judge.explain([text_judge.prepare(request)], 4)
    assert "four" in out.text.lower()


def test_vlm_serves_as_judge_with_its_chat_template(vlm: TransformersModel) -> None:
    text = vlm.render(ChatPrompt("Be brief.", "Rate it."))
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nRate it.<end_of_turn>\n<start_of_turn>model\n"
    assert probs(vlm, [ChatPrompt("s", "u")], [str(d) for d in range(10)]).shape == (1, 10)


def test_answer_variants(text_judge: TransformersModel) -> None:
    groups = text_judge.answer_token_ids(["no", "yes"])
    tok = text_judge.tokenizer
    assert {tok.convert_ids_to_tokens(i) for i in groups[1]} >= {"yes", "▁yes", "Yes", "▁Yes"}
    with pytest.raises(ValueError, match="must be one"):
        text_judge.prepare(ScoreRequest(ChatPrompt("", "x"), ("zqxjkvbw", "0")))


@torch.inference_mode()
def _uncached(
    model: TransformersModel, prompt: ChatPrompt, answers: Sequence[str], layer: int, *, pool_head: bool = False
) -> tuple:
    """The reference: one plain forward pass of the whole model over the whole prompt, nothing reused; the
    states pooled over the tail or, with ``pool_head``, over every token."""
    head, tail = model.split_fixed(prompt)
    head_ids, tail_ids = model._ids(head) if head else [], model._ids(tail)
    whole = model._ids(model.render(prompt))
    assert head_ids + tail_ids == whole  # the cut tokenises exactly like the whole prompt
    out = model.model(input_ids=torch.tensor([whole]), output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    per_answer = torch.stack([torch.logsumexp(logp[g], dim=-1) for g in model.answer_token_ids(answers)])
    pooled = out.hidden_states[layer][0, 0 if pool_head else len(head_ids) :].float().mean(dim=0)
    return torch.softmax(per_answer, dim=-1).numpy(), pooled.numpy(), len(head_ids)


def test_prefix_cached_judge_pass_equals_a_plain_forward_pass(text_judge: TransformersModel) -> None:
    """The shared head's KV cache, tails of different lengths padded in one batch, and a prompt with another
    head in the same batch: the answer distribution and the pooled hidden states are those of a plain
    forward pass over each whole prompt."""
    settings = JudgeSettings()
    windows = [
        ["A man walks to the table."],
        ["Two men push each other near the table.", "One man falls to the floor; the other kicks him hard."],
        ["The corridor is empty.", "A woman carries a box.", "She puts the box down and leaves the building."],
    ]
    prompts = [judge_prompt(settings, w, "a parking lot" if i == 1 else None) for i, w in enumerate(windows)]
    other_head = ChatPrompt("", "Say yes or no. Report: a fire breaks out.\nAnswer:", fixed=14)
    prompts.append(other_head)
    layer = 6
    results = score(text_judge, prompts, settings.answers, (layer,))
    tails = set()
    for prompt, got in zip(prompts, results, strict=True):
        want_probs, want_pooled, n_head = _uncached(text_judge, prompt, settings.answers, layer)
        assert n_head > 0  # every prompt here has a fixed head, so its cache is used
        tails.add(len(text_judge.split_fixed(prompt)[1]))
        np.testing.assert_allclose(got.probs, want_probs, atol=2e-5)
        np.testing.assert_allclose(got.pooled[layer], want_pooled, rtol=1e-3, atol=1e-3)
    assert len(tails) == len(prompts)  # tails of different lengths shared the batch


def test_probe_pass_pools_its_cached_head_too(text_judge: TransformersModel) -> None:
    """A calibration's probe request marks its instructions fixed and pools over the whole prompt: the states
    of a plain pass over the whole text, when its head is new to the batch (beside another new head whose
    prompt pools its tail only), the next time (its cache computed), and from the cache after that."""
    windows = [["A man walks to the table."], ["Two men push each other.", "One man falls to the floor."]]
    layers = (5, 6)
    requests = [probe_request(PROBE_PROMPT, layers, w) for w in windows]
    for round_ in range(3):
        other = ScoreRequest(
            ChatPrompt("", f"Round {round_}: say yes or no. Report: a fire.\nAnswer:", 22), ("no", "yes"), layers
        )
        batch = [*requests, other]
        results = text_judge.score([text_judge.prepare(r) for r in batch], ("no", "yes"), layers)
        for request, got in zip(batch, results, strict=True):
            for layer in layers:
                want_probs, want, n_head = _uncached(
                    text_judge, request.prompt, request.answers, layer, pool_head=request.pool_head
                )
                assert n_head > 0
                np.testing.assert_allclose(got.probs, want_probs, atol=2e-5)
                np.testing.assert_allclose(got.pooled[layer], want, rtol=1e-3, atol=1e-3)


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        TransformersModel(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        TransformersModel(str(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_a_gpu() -> None:
    from pipeline.engines.transformers import resolve_device

    with pytest.raises(ModelLoadError, match="device = 'cuda'"):
        resolve_device("cuda")


def test_vision_embeddings_of_the_vlm(vlm: TransformersModel) -> None:
    from pipeline.inference import EmbedRequest

    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(2))
    ea, ea2, eb = vlm.embed([vlm.prepare(EmbedRequest(x)) for x in (a, a, b)])
    assert vlm.info.embeddings and ea.vector.shape == eb.vector.shape
    assert abs(float(np.linalg.norm(ea.vector)) - 1.0) < 1e-5
    assert float(ea.vector @ ea2.vector) > 0.9999 > float(ea.vector @ eb.vector)


def test_the_output_projection_is_computed_the_fast_way_with_the_same_results(text_judge: TransformersModel) -> None:
    head = text_judge.model.lm_head
    assert not isinstance(head, torch.nn.Linear)  # replaced on the CPU: MKL is slow at x @ W.T for few rows
    assert head.weight is text_judge.model.get_input_embeddings().weight  # still tied
    linear = torch.nn.Linear(head.weight.shape[1], head.weight.shape[0], bias=False)
    linear.weight = head.weight
    with torch.inference_mode():
        for shape in ((1, 640), (2, 1, 640), (8, 5, 640)):
            x = torch.randn(*shape)
            torch.testing.assert_close(head(x), linear(x), rtol=1e-4, atol=1e-4)
