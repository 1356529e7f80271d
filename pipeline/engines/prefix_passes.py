"""The judge's forward passes over prompts that share fixed heads: a head seen before (the judge prompt's
instructions and examples) is computed once and its KV cache reused; the heads new to a batch (a window's
report that its rules share) are computed together in one pass, then every tail in another."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pipeline.engines.batching import Prepared

Pass = tuple[list[int], tuple[torch.Tensor, dict[int, torch.Tensor]]]
"""Item indices, and their logits at the last token and pooled hidden states of the asked layers."""
Head = tuple[int, Any, tuple[torch.Tensor, ...]]
"""A cached head: its token count, KV cache and the sum over its tokens of each layer's hidden states."""


class JudgeInput(Prepared):
    """A judge prompt split into its shared head (text and ids, "" when none) and its own tail ids;
    ``pool_head``: its pooled states cover the head's tokens too, not only the tail's."""

    __slots__ = ("head", "head_ids", "pool_head", "tail_ids")

    def __init__(self, head: str, head_ids: list[int], tail_ids: list[int], pool_head: bool = False) -> None:
        self.head = head
        self.head_ids = head_ids
        self.tail_ids = tail_ids
        self.pool_head = pool_head


def pad_rows(rows: Sequence[torch.Tensor | list[int]], value: int, *, left: bool) -> torch.Tensor:
    """Stack 1-D rows into a batch, padded with ``value`` on the left or the right."""
    tensors = [r if isinstance(r, torch.Tensor) else torch.tensor(r, dtype=torch.long) for r in rows]
    width = max(len(t) for t in tensors)
    out = torch.full((len(tensors), width), value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        if left:
            out[i, width - len(t) :] = t
        else:
            out[i, : len(t)] = t
    return out


class PrefixPasses:
    """Forward passes of a causal LM (``model``: the text model, without its output head) over judge
    prompts; ``logits`` turns last hidden states into next-token logits. Keeps the caches of a few heads."""

    def __init__(
        self, model: Any, logits: Callable[[torch.Tensor], torch.Tensor], *, device: torch.device, pad_id: int
    ) -> None:
        self.model = model
        self.logits = logits
        self.device = device
        self.pad_id = pad_id
        self._prefixes: dict[str, Head] = {}
        self._seen: dict[str, None] = {}
        """Heads computed once without being cached: seen again, a head is cached (it is a fixed one)."""

    def run(self, items: Sequence[JudgeInput], pool_layers: Sequence[int]) -> list[Pass]:
        """Every item's logits and pooled states, in as few passes as the shared heads allow."""
        by_head: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_head.setdefault(it.head, []).append(i)
        # heads seen before (the judge prompt's instructions and examples) come from their cache, one pass
        # per head; heads new to this batch (a window's report that its rules share) are computed together
        # in one pass, then every tail in another
        new = {h: idxs for h, idxs in by_head.items() if h and h not in self._prefixes and h not in self._seen}
        for head in new:
            self._seen[head] = None
            while len(self._seen) > 64:
                self._seen.pop(next(iter(self._seen)))
        passes: list[Pass] = [
            (idxs, self._forward_last([items[i] for i in idxs], pool_layers))
            for h, idxs in by_head.items()
            if h not in new
        ]
        if new:
            order = [i for idxs in new.values() for i in idxs]
            passes.append(
                (order, self._forward_new_heads([[items[i] for i in idxs] for idxs in new.values()], pool_layers))
            )
        return passes

    def _prefix_cache(self, head: str, head_ids: list[int]) -> Head:
        """A fixed head's token count, KV cache and hidden-state sums, computed once (the most recently used
        few are kept: the judge prompt's head stays while the window reports that rules share come and go)."""
        found = self._prefixes.pop(head, None)
        if found is not None:
            self._prefixes[head] = found  # most recently used last
        else:
            ids = torch.tensor([head_ids], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True, output_hidden_states=True)
            found = (len(head_ids), out.cache, tuple(h[0].float().sum(dim=0) for h in out.hidden_states))
            self._prefixes[head] = found
            while len(self._prefixes) > 8:
                self._prefixes.pop(next(iter(self._prefixes)))
        return found

    def _forward_last(
        self, items: Sequence[JudgeInput], pool_layers: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits at each prompt's last token and mean-pooled hidden states (see :meth:`_read_out`), for prompts
        that share one head (its cache reused) or none (``head == ""``). Tails are padded on the right."""
        head = items[0].head
        past, n_head = None, 0
        sums: tuple[torch.Tensor, ...] = ()
        if head:
            n_head, cached, sums = self._prefix_cache(head, items[0].head_ids)
            past = copy.deepcopy(cached)
            past.batch_repeat_interleave(len(items))
        rows = [it.tail_ids for it in items]
        ids = pad_rows(rows, self.pad_id, left=False).to(self.device)
        mask = pad_rows([[1] * len(r) for r in rows], 0, left=False).to(self.device)
        full_mask = torch.cat([torch.ones(len(items), n_head, dtype=mask.dtype, device=self.device), mask], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=full_mask,
            cache=past,
            use_cache=past is not None,
            output_hidden_states=bool(pool_layers),
        )
        head_sums = {layer: sums[layer].expand(len(items), -1) for layer in pool_layers} if sums else {}
        return self._read_out(out, mask, pool_layers, items, head_sums, torch.full((len(items),), n_head))

    def _forward_new_heads(
        self, groups: Sequence[Sequence[JudgeInput]], pool_layers: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Like :meth:`_forward_last` for several groups of prompts, each group sharing a head not cached: the
        heads in one pass (left-padded, positions counted from each one's first token), their caches
        repeated for the members, then all tails in one pass. Rows come in group order."""
        dev = self.device
        heads = [g[0].head_ids for g in groups]
        hids = pad_rows(heads, self.pad_id, left=True).to(dev)
        hmask = pad_rows([[1] * len(h) for h in heads], 0, left=True).to(dev)
        hpos = (hmask.cumsum(dim=1) - 1).clamp(min=0)
        members = [it for g in groups for it in g]
        pool_heads = bool(pool_layers) and any(it.pool_head for it in members)
        hout = self.model(
            input_ids=hids, attention_mask=hmask, position_ids=hpos, use_cache=True, output_hidden_states=pool_heads
        )
        cache = hout.cache
        member_of = torch.tensor([g for g, members in enumerate(groups) for _ in members], device=dev)
        cache.batch_select_indices(member_of)
        head_sums: dict[int, torch.Tensor] = {}
        if pool_heads:
            real = hmask.unsqueeze(-1).bool()  # the left padding's states are left out, whatever they hold
            head_sums = {
                k: torch.where(real, hout.hidden_states[k].float(), 0.0).sum(dim=1)[member_of] for k in pool_layers
            }
        rows = [it.tail_ids for it in members]
        ids = pad_rows(rows, self.pad_id, left=False).to(dev)
        mask = pad_rows([[1] * len(r) for r in rows], 0, left=False).to(dev)
        lengths = hmask.sum(dim=1)[member_of]
        pos = lengths[:, None] + torch.arange(ids.shape[1], device=dev)[None, :]
        out = self.model(
            input_ids=ids,
            attention_mask=torch.cat([hmask[member_of], mask], dim=1),
            position_ids=pos,
            cache=cache,
            use_cache=True,
            output_hidden_states=bool(pool_layers),
        )
        return self._read_out(out, mask, pool_layers, members, head_sums, lengths)

    def _read_out(
        self,
        out: Any,
        mask: torch.Tensor,
        pool_layers: Sequence[int],
        items: Sequence[JudgeInput],
        head_sums: dict[int, torch.Tensor],
        head_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits at each row's last token and the hidden states of ``pool_layers`` mean-pooled over the tail,
        or over head and tail for the rows that ask for it (``head_sums``: each row's head sums, or none)."""
        n_tail = mask.sum(dim=1)
        batch_rows = torch.arange(mask.shape[0], device=self.device)
        logits = self.logits(out.last_hidden_state[batch_rows, n_tail - 1])
        weights = mask.unsqueeze(-1).float()
        pooled = {layer: (out.hidden_states[layer].float() * weights).sum(dim=1) for layer in pool_layers}
        whole = torch.tensor([it.pool_head for it in items], device=self.device)
        if head_sums and bool(whole.any()):
            n_head = torch.where(whole, head_lengths.to(self.device), 0)
            for layer in pool_layers:
                pooled[layer] = pooled[layer] + head_sums[layer] * whole[:, None]
            count = (n_tail + n_head).unsqueeze(-1)
        else:
            count = n_tail.unsqueeze(-1)
        return logits, {layer: v / count for layer, v in pooled.items()}
