"""In-process Hugging Face transformers models for the batching engine: any chat-templated
image-text-to-text model (frame descriptions) or causal LM (a text-only judge)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from pipeline.engines.batching import Prepared
from pipeline.engines.prefix_passes import JudgeInput, PrefixPasses, pad_rows
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    DescribeResult,
    EmbedRequest,
    EmbedResult,
    ExplainResult,
    ModelInfo,
    ModelLoadError,
    ModelRequest,
    ScoreRequest,
    ScoreResult,
)

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("-", "device = 'cuda' but no CUDA GPU is available", "Set device = 'auto' or 'cpu'.")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA, float32 on CPU (where bf16 matmuls are slow)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def _explain_load_error(model: str, exc: BaseException) -> ModelLoadError:
    from huggingface_hub import errors as hub_errors

    text = str(exc)
    if isinstance(exc, hub_errors.GatedRepoError) or "gated" in text.lower():
        return ModelLoadError(
            model,
            "the repository is gated",
            f"Accept its licence at https://huggingface.co/{model} and set HF_TOKEN (or HUGGINGFACE_API_KEY, "
            "also read from .env) to a token of that account.",
        )
    if isinstance(exc, hub_errors.RepositoryNotFoundError | hub_errors.RevisionNotFoundError):
        return ModelLoadError(
            model,
            "no such repository or revision on the Hugging Face Hub",
            "Check the id (e.g. google/gemma-3-4b-it) or give a local directory; private repositories need HF_TOKEN.",
        )
    if isinstance(exc, hub_errors.LocalEntryNotFoundError) or "couldn't connect" in text or "offline" in text.lower():
        return ModelLoadError(
            model,
            "the Hugging Face Hub cannot be reached and the model is not in the local cache",
            f"On a machine with internet access run `hf download {model} --local-dir DIR`, copy DIR here and "
            "name DIR instead ([model] id or --model for the describing model, [judge] model or --judge-model "
            "for the judge).",
        )
    return ModelLoadError(
        model,
        f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": "),
        "Check that it is a transformers model directory or hub id.",
    )


class _ImageInput(Prepared):
    """A frame and its prompt as processor outputs: per-token rows (1-D) and per-image tensors."""

    __slots__ = ("images", "tokens")

    def __init__(self, tokens: dict[str, torch.Tensor], images: dict[str, torch.Tensor]) -> None:
        self.tokens = tokens
        self.images = images


class _PixelInput(Prepared):
    """A frame as the image processor makes it, for the vision tower alone."""

    __slots__ = ("pixels",)

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels


class _TextInput(Prepared):
    __slots__ = ("ids",)

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


class _TallProjection(torch.nn.Module):
    """The output projection (hidden -> vocabulary, 262,144 rows for Gemma 3) computed as ``(W @ x.T).T``.

    On the CPU, MKL runs ``x @ W.T`` badly for the few rows of a decoding step (2 rows: 130 ms; as
    ``W @ x.T``: 17 ms; 8 rows: 124 against 58 ms): this one matrix product is a third of a decoding step.
    Same weights (still tied to the embeddings), same results up to rounding.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = (self.weight @ flat.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


class TransformersModel:
    """Loads a model through ``from_pretrained`` (hub id or local directory) and serves batches.

    Vision-language models (configs with a ``vision_config``) load with ``AutoProcessor`` and
    ``AutoModelForImageTextToText``; text-only models with ``AutoTokenizer`` and ``AutoModelForCausalLM``.
    :meth:`prepare` runs on the engine's preparation thread (it only encodes, never pads, so the fast
    tokenizer is never reconfigured while the model thread decodes); batches are padded on the left for
    generation. Decoding is greedy.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        revision: str | None = None,
        attn_implementation: str = "sdpa",
        token: str | None = None,
        chat_template: str = "auto",
    ) -> None:
        from transformers import AutoConfig
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # our logs say what loads

        self._name = model
        if _looks_local(model):
            path = Path(model).expanduser()
            if not path.is_dir():
                raise ModelLoadError(model, "no such directory", "Give an existing model directory or a hub id.")
            if not (path / "config.json").is_file():
                raise ModelLoadError(
                    model, "the directory has no config.json", "Point to a folder saved with save_pretrained."
                )
            model = str(path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        kwargs: dict[str, Any] = {"revision": revision, "token": token}
        t0 = time.monotonic()
        try:
            config = AutoConfig.from_pretrained(model, **kwargs)
            self._vision = getattr(config, "vision_config", None) is not None
            if self._vision:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                self.processor: Any = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
                    model, padding_side="left", **kwargs
                )
                self.tokenizer: Any = self.processor.tokenizer
                auto_model: Any = AutoModelForImageTextToText
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left", **kwargs)
                self.processor = None
                auto_model = AutoModelForCausalLM
            self.model: Any = auto_model.from_pretrained(
                model, dtype=self.dtype, attn_implementation=attn_implementation, **kwargs
            )
        except ModelLoadError:
            raise
        except Exception as exc:
            raise _explain_load_error(self._name, exc) from exc
        self.model.to(self.device).eval()
        head = getattr(self.model, "lm_head", None)
        if self.device.type == "cpu" and isinstance(head, torch.nn.Linear) and head.out_features >= 32_768:
            self.model.lm_head = _TallProjection(head)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._pad_id = int(self.tokenizer.pad_token_id)
        has_template = bool(getattr(self.tokenizer, "chat_template", None)) or bool(
            getattr(self.processor, "chat_template", None)
        )
        if chat_template == "always" and not has_template:
            raise ModelLoadError(self._name, "it has no chat template", "Set judge.chat_template = 'never' or 'auto'.")
        self.use_chat_template = has_template and chat_template != "never"
        self._answer_ids: dict[tuple[str, ...], list[list[int]]] = {}
        self._eos = self._eos_ids()
        self._passes = PrefixPasses(self.model.model, self._head_logits, device=self.device, pad_id=self._pad_id)
        text_cfg = self.model.config.get_text_config()
        self._info = ModelInfo(
            name=self._name,
            fingerprint=self._fingerprint(),
            images=self._vision,
            hidden_states=True,
            num_layers=int(text_cfg.num_hidden_layers),
            hidden_size=int(text_cfg.hidden_size),
            embeddings=self._vision,
        )
        note = getattr(self.model.config, "llmvad_note", None)
        if note:
            log.warning("%s is %s; for real descriptions use google/gemma-3-4b-it (--model)", self._name, note)
        log.info(
            "loaded %s (%s, %s on %s) in %.1f s",
            self._name,
            type(self.model).__name__,
            str(self.dtype).removeprefix("torch."),
            self.device,
            time.monotonic() - t0,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _fingerprint(self) -> str:
        """Hash of the architecture's sizes and the first rows of the input embeddings."""
        import hashlib

        cfg = self.model.config.get_text_config()
        emb = self.model.get_input_embeddings().weight[:16].detach().float().cpu().numpy()
        h = hashlib.sha256(f"{cfg.hidden_size}/{cfg.num_hidden_layers}/{cfg.vocab_size}".encode())
        h.update(np.ascontiguousarray(emb).tobytes())
        return h.hexdigest()[:16]

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(eos)
        for tok in ("<end_of_turn>", self.tokenizer.eos_token):
            tid = self.tokenizer.convert_tokens_to_ids(tok) if tok else None
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return sorted(ids)

    # -- prompts -----------------------------------------------------------------------------------

    def render(self, prompt: ChatPrompt) -> str:
        """The exact text the model sees for a prompt (chat template, or plain text after BOS)."""
        if self.use_chat_template:
            messages: list[dict[str, Any]] = []
            if prompt.system:
                messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
            messages.append({"role": "user", "content": [{"type": "text", "text": prompt.user}]})
            templater = self.processor if self.processor is not None else self.tokenizer
            text: str = templater.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return text
        bos = self.tokenizer.bos_token or ""
        return f"{bos}{prompt.system}\n\n{prompt.user}" if prompt.system else f"{bos}{prompt.user}"

    def split_fixed(self, prompt: ChatPrompt) -> tuple[str, str]:
        """The rendered prompt as (fixed head, variable tail); the head is "" when nothing is shared.

        Whitespace at the cut goes to the tail, so the two tokenise exactly like the whole.
        """
        text = self.render(prompt)
        fixed = prompt.user[: prompt.fixed].strip()
        at = text.find(fixed) if fixed else -1
        if at < 0:
            return "", text
        head = text[: at + len(fixed)].rstrip()
        return head, text[len(head) :]

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def answer_token_ids(self, answers: Sequence[str]) -> list[list[int]]:
        """For each answer, the single-token spellings the model may use for it.

        An answer counts in any of its variants "yes", " yes", "Yes", " Yes" that is one token (a chat
        model answers right after its turn marker, a plain prompt after a space or not). Raises ValueError
        naming an answer that has no single-token variant.
        """
        key = tuple(answers)
        if key not in self._answer_ids:
            groups: list[list[int]] = []
            for answer in answers:
                core = answer.strip()
                ids: list[int] = []
                for variant in dict.fromkeys([answer, core, " " + core, core.capitalize(), " " + core.capitalize()]):
                    toks = self._ids(variant)
                    if len(toks) == 1 and toks[0] not in ids:
                        ids.append(toks[0])
                if not ids:
                    raise ValueError(f"judge answer {answer!r} is not a single token for {self._name}; it must be one")
                groups.append(ids)
            taken = [i for g in groups for i in g]
            if len(taken) != len(set(taken)):
                raise ValueError(f"judge answers {list(answers)} share a token for {self._name}")
            self._answer_ids[key] = groups
        return self._answer_ids[key]

    # -- preparation (any thread but the model's) --------------------------------------------------

    def prepare(self, request: ModelRequest) -> Prepared:
        """Encode one request: the processor's image work and tokenisation, no padding."""
        if isinstance(request, DescribeRequest):
            return self._prepare_image(request)
        if isinstance(request, EmbedRequest):
            if not self._vision:
                raise RuntimeError(f"{self._name} is a text-only model and has no vision tower")
            from PIL import Image as PILImage

            pixels = self.processor.image_processor(images=[PILImage.fromarray(request.image)], return_tensors="pt")
            return _PixelInput(pixels["pixel_values"][0].to(self.dtype))
        if isinstance(request, ScoreRequest):
            self.answer_token_ids(request.answers)  # cached for the model thread; fails early if invalid
            head, tail = self.split_fixed(request.prompt)
            return JudgeInput(head, self._ids(head) if head else [], self._ids(tail), request.pool_head)
        return _TextInput(self._ids(self.render(request.prompt)))

    def _prepare_image(self, request: DescribeRequest) -> _ImageInput:
        if not self._vision:
            raise RuntimeError(f"{self._name} is a text-only model and cannot describe images")
        from PIL import Image as PILImage

        text = self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        enc = self.processor(text=[text], images=[[PILImage.fromarray(request.image)]], return_tensors="pt")
        tokens = {k: v[0] for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        images = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in enc.items() if k not in tokens}
        return _ImageInput(tokens, images)

    # -- the model thread --------------------------------------------------------------------------

    @torch.inference_mode()
    def describe(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[DescribeResult]:
        items = [_expect(p, _ImageInput) for p in batch]
        inputs: dict[str, torch.Tensor] = {
            k: pad_rows([it.tokens[k] for it in items], self._pad_id if k == "input_ids" else 0, left=True)
            for k in items[0].tokens
        }
        for k in items[0].images:
            inputs[k] = torch.cat([it.images[k] for it in items])
        return [DescribeResult(t) for t in self._greedy(inputs, max_new_tokens, cancel)]

    @torch.inference_mode()
    def embed(self, batch: Sequence[Prepared]) -> list[EmbedResult]:
        """The vision tower's last hidden states, mean-pooled over the patches and made unit length."""
        pixels = torch.stack([_expect(p, _PixelInput).pixels for p in batch]).to(self.device)
        hidden = self.model.model.vision_tower(pixel_values=pixels).last_hidden_state.float().mean(dim=1)
        unit = torch.nn.functional.normalize(hidden, dim=-1).cpu().numpy()
        return [EmbedResult(row) for row in unit]

    @torch.inference_mode()
    def explain(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[ExplainResult]:
        rows = [_expect(p, _TextInput).ids for p in batch]
        ids = pad_rows(rows, self._pad_id, left=True)
        mask = pad_rows([[1] * len(r) for r in rows], 0, left=True)
        inputs = {"input_ids": ids, "attention_mask": mask}
        return [ExplainResult(t) for t in self._greedy(inputs, max_new_tokens, cancel)]

    def _greedy(
        self, inputs: dict[str, torch.Tensor], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[str]:
        """Greedy decoding of a left-padded batch; the new text of each row, stripped. Stops at the next
        token once ``cancel`` is set."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                stop = cancel is not None and cancel.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        on_device = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model.generate(
            **on_device,
            stopping_criteria=StoppingCriteriaList([Cancelled()]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self._eos,
            pad_token_id=self._pad_id,
            top_p=None,
            top_k=None,
        )
        new = out[:, on_device["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model.lm_head(hidden).float()
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def score(self, batch: Sequence[Prepared], answers: Sequence[str], pool_layers: Sequence[int]) -> list[ScoreResult]:
        """One forward pass per group of prompts sharing a cached head, one for all heads new to the batch
        (pipeline/engines/prefix_passes.py); the answer distribution is read at each prompt's last token."""
        items = [_expect(p, JudgeInput) for p in batch]
        groups = self.answer_token_ids(answers)
        for layer in pool_layers:
            if not 0 <= layer <= self._info.num_layers:
                raise ValueError(f"layer {layer} is not in 0..{self._info.num_layers} for {self._name}")
        probs = np.zeros((len(items), len(groups)), dtype=np.float64)
        pooled = {layer: np.zeros((len(items), self._info.hidden_size), np.float32) for layer in pool_layers}
        for idxs, (logits, pools) in self._passes.run(items, pool_layers):
            logp = torch.log_softmax(logits, dim=-1)
            per_answer = torch.stack([torch.logsumexp(logp[:, g], dim=-1) for g in groups], dim=-1)
            probs[idxs] = torch.softmax(per_answer, dim=-1).cpu().numpy()  # renormalised over the answers
            for layer, values in pools.items():
                pooled[layer][idxs] = values.cpu().numpy()
        return [ScoreResult(probs[i], {k: v[i] for k, v in pooled.items()}) for i in range(len(items))]


P = TypeVar("P", bound=Prepared)


def _expect(prepared: Prepared, kind: type[P]) -> P:
    if not isinstance(prepared, kind):
        raise TypeError(f"expected {kind.__name__} inputs, got {type(prepared).__name__}")
    return prepared
