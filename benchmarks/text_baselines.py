"""Left-to-right baselines for the text domain, on a run's own data: what fluency a likelihood buys.

    python benchmarks/text_baselines.py --run runs/wn        # block text_baselines of docs/text.md

The diffusion run is compared with two language models that write left to
right, fit on the same training split (the same word tokenizer, the same
sentences, ``[UNK]`` included and never written):

- the trigram model the evaluation scores with (modified Kneser-Ney,
  ``multidiff.metrics.text.KneserNeyLM``), sampled word by word;
- a causal transformer of the run's backbone size (width, depth, heads,
  the same output head over the vocabulary), trained by next-word
  cross-entropy for the same number of steps and batch size, on the same
  threads, then sampled ancestrally.

Each gets its cross-entropy in bits per token on the same held-out sentences
(words plus one end, as the run's ``nll_bits_per_token`` counts; the run's
figure, computed here, is an upper bound) and 20 unedited samples, with the figures the run's evaluation gives
samples (trigram perplexity beside the real floor, words a sentence, copies).
A sample's perplexity under the trigram model it was drawn from says nothing,
so that cell is left empty.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import threads_and_machine  # noqa: E402
from docblock import write_block  # noqa: E402

from multidiff.backbones import Transformer1DConfig  # noqa: E402
from multidiff.data import ShuffledBatches  # noqa: E402
from multidiff.metrics.text import KneserNeyLM, copy_rate, grammar_rate, link_parser_available  # noqa: E402
from multidiff.recipes import text  # noqa: E402
from multidiff.recipes.common import engine_config  # noqa: E402
from multidiff.train.lr_schedule import lr_at  # noqa: E402

DOC = ROOT / "docs" / "results" / "text.md"  # the whole block, with samples of every model
GUIDE = ROOT / "docs" / "text.md"  # its table alone
SHOWN = 20
EVAL_EVERY = 500


class CausalLM(nn.Module):
    """A pre-LayerNorm causal transformer over word ids: learned positions, ``depth`` blocks, a
    final LayerNorm and a linear head over the vocabulary."""

    def __init__(self, vocab: int, length: int, width: int, depth: int, heads: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Parameter(torch.randn(1, length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V) logits of the next word
        t = ids.shape[1]
        h = self.tokens(ids) + self.positions[:, :t]
        return self.head(self.norm(self.blocks(h, mask=self.mask[:t, :t], is_causal=True)))


def lm_batches(ids: torch.Tensor, bos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[BOS, w1 .. w_{L}]`` and targets ``[w1 .. w_L, end]`` with the end written as the pad
    id; positions after the end are ignored (target -100). ``ids`` are ``(N, L)`` padded sentences."""
    pad_start = torch.full((len(ids), 1), bos, dtype=torch.long)
    inputs = torch.cat([pad_start, ids], 1)
    targets = torch.cat([ids, torch.full((len(ids), 1), -100, dtype=torch.long)], 1)
    return inputs, targets


def mask_after_end(targets: torch.Tensor, pad: int) -> torch.Tensor:
    """Keep the first pad (the end of the sentence) as a target, ignore later ones."""
    is_pad = targets == pad
    later = is_pad & (is_pad.long().cumsum(1) > 1)
    out = targets.clone()
    out[later] = -100
    # a sentence that fills every position ends after its last word: the extra slot predicts the end
    full = ~is_pad[:, :-1].any(1)
    out[full, -1] = pad
    return out


def train_causal(config, data, tokenizer, log=print) -> tuple[CausalLM, CausalLM, int, float]:
    """``(model at its best validation likelihood, model after the last step, the best step, seconds)``:
    the same steps, batch, learning rate and schedule as the run; every EVAL_EVERY steps the
    validation split is scored."""
    torch.manual_seed(config.seed)
    vocab = tokenizer.vocab_size
    bos = tokenizer.unk_id  # never a target in held-out text; only ever the first input
    ids = data.splits["train"]["ids"]
    inputs, targets = lm_batches(ids, bos)
    targets = mask_after_end(targets, tokenizer.pad_id)
    heads = Transformer1DConfig.preset(config.preset).num_heads
    model = CausalLM(vocab, config.length + 1, config.width, config.depth, heads)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    engine = engine_config(config)  # the run's schedule: warm-up, cosine decay to lr / 10
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(engine, step) / config.lr)
    batches = ShuffledBatches({"x": inputs, "y": targets}, config.batch_size, seed=config.seed)
    best = (math.inf, 0, None)  # validation bits, step, weights
    start = time.perf_counter()
    for step in range(config.steps):
        batch = next(batches)
        logits = model(batch["x"])
        loss = F.cross_entropy(logits.reshape(-1, vocab), batch["y"].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % EVAL_EVERY == 0 or step == config.steps - 1:
            model.eval()
            bits = causal_bits_per_token(model, data.splits["validation"]["ids"], tokenizer)
            model.train()
            if bits < best[0]:
                best = (bits, step + 1, copy.deepcopy(model.state_dict()))
            log(f"causal LM step {step + 1}: loss {loss.item():.3f}, validation {bits:.2f} bits/token "
                f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    last = copy.deepcopy(model)
    model.load_state_dict(best[2])
    return model, last, best[1], seconds


@torch.no_grad()
def causal_bits_per_token(model: CausalLM, ids: torch.Tensor, tokenizer) -> float:
    inputs, targets = lm_batches(ids, tokenizer.unk_id)
    targets = mask_after_end(targets, tokenizer.pad_id)
    logits = model(inputs)
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return float(nats / math.log(2) / (targets != -100).sum())


@torch.no_grad()
def causal_sample(model: CausalLM, num: int, length: int, tokenizer, seed: int) -> list[tuple[str, ...]]:
    """Ancestral sampling, word by word, never ``[UNK]``; a sentence ends at the first pad."""
    gen = torch.Generator().manual_seed(seed)
    seq = torch.full((num, 1), tokenizer.unk_id, dtype=torch.long)
    for _ in range(length):
        logits = model(seq)[:, -1].float()
        logits[:, tokenizer.unk_id] = -math.inf
        seq = torch.cat([seq, torch.multinomial(F.softmax(logits, -1), 1, generator=gen)], 1)
    vocabulary = tokenizer.vocabulary()
    out = []
    for row in seq[:, 1:].tolist():
        words = []
        for i in row:
            if i == tokenizer.pad_id:
                break
            words.append(vocabulary[i])
        out.append(tuple(words))
    return out


def sample_figures(samples, lm: KneserNeyLM, train, score: bool) -> dict:
    return {"perplexity": lm.perplexity(samples) if score else None,
            "words": sum(map(len, samples)) / len(samples), "copies": copy_rate(samples, train),
            "grammar": grammar_rate(samples) if link_parser_available() else None}


def baselines(run: Path, num: int, steps: int | None = None, log=print) -> str:
    """The block: the run against the two left-to-right models (``steps``: the causal model's, default the
    run's own)."""
    model, config, tokenizer, _, _ = text.load_run(run)
    run_steps = config.steps
    if steps is not None:
        config = replace(config, steps=steps)
    data = text.Prepared(config, text.load_corpus(config), tokenizer)
    train = [tuple(t.split()) for t in data.splits["train"]["text"]]
    test = [tuple(t.split()) for t in data.splits["test"]["text"]]
    lm = KneserNeyLM(order=3).fit(train)
    real_ppl = lm.perplexity(test)
    with text.threads_of(config):  # the run's likelihood bound, on the sentences the others are scored on
        nll = text.nll_bits_per_token(model, config, data, num=num, seed=0)
    pick = nll["nll_pick"]
    scored = [test[i] for i in pick]
    diffusion = [tuple(t.split()) for t in text.sample(run, num=num, seed=0)["text"]]
    trigram = lm.sample(num, random.Random(0), max_words=config.length)
    with text.threads_of(config):
        causal, last, best_step, seconds = train_causal(config, data, tokenizer, log)
        causal.eval()
        last.eval()
        causal_bits = causal_bits_per_token(causal, data.splits["test"]["ids"][pick], tokenizer)
        last_bits = causal_bits_per_token(last, data.splits["test"]["ids"][pick], tokenizer)
        written = causal_sample(causal, num, config.length, tokenizer, seed=0)
        written_last = causal_sample(last, num, config.length, tokenizer, seed=0)
    trigram_bits = math.log2(lm.perplexity(scored))
    rows = [("diffusion (the run; upper bound)", nll["nll_bits_per_token"], None,
             sample_figures(diffusion, lm, train, True), diffusion),
            ("trigram, Kneser-Ney (left to right)", trigram_bits, None, sample_figures(trigram, lm, train, False),
             trigram),
            (f"causal transformer {config.width} x {config.depth}, at its best validation likelihood (step "
             f"{best_step} of {config.steps})", causal_bits, None, sample_figures(written, lm, train, True), written),
            (f"the same causal transformer after all {config.steps} steps of {config.batch_size}", last_bits,
             seconds, sample_figures(written_last, lm, train, True), written_last)]
    real_grammar = grammar_rate(test) if link_parser_available() else None
    grammar_head = f"complete parses (link-grammar; real {'-' if real_grammar is None else f'{real_grammar:.2f}'})"
    lines = [f"Run `{run}`: {len(train)} training sentences, vocabulary {tokenizer.vocab_size}; held-out "
             f"test sentences: {len(test)}, trigram perplexity {real_ppl:.0f}, "
             f"{sum(map(len, test)) / len(test):.2f} words a sentence. Likelihoods on the same {len(pick)} of them "
             f"(drawn at random; the diffusion bound with {nll['nll_ode_steps']} RK4 steps). {num} samples per "
             "model.", "",
             "| model | held-out bits / token | samples' trigram ppl (real "
             f"{real_ppl:.0f}) | {grammar_head} | words / sentence | copies of training sentences |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, bits, _, fig, _ in rows:
        ppl = "-" if fig["perplexity"] is None else f"{fig['perplexity']:.0f}"
        parses = "-" if fig["grammar"] is None else f"{fig['grammar']:.2f}"
        lines.append(f"| {name} | {bits:.2f} | {ppl} | {parses} | {fig['words']:.2f} | {fig['copies']:.3f} |")
    lines += ["", f"The causal transformer trained in {seconds:.0f} s ({config.steps} steps of {config.batch_size}, "
              f"the run's were {run_steps}); validation scored every {EVAL_EVERY} steps."]
    lines.append("")
    for name, _, _, _, samples in rows:
        lines += [f"{name}, the first {min(SHOWN, num)} samples:", "", "```text"]
        lines += [" ".join(s) for s in samples[:SHOWN]] + ["```", ""]
    lines.append(f"{threads_and_machine(torch.get_num_threads())}.")
    return "\n".join(lines) + "\n"


def table_of(block: str) -> str:
    """The block's opening sentence and table, without the samples (for the user guide)."""
    return block.split("\n\nThe causal transformer trained")[0] + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--steps", type=int, default=None, help="the causal model's steps (default: the run's)")
    parser.add_argument("--print", action="store_true", help="print the block instead of writing docs/text.md")
    args = parser.parse_args()
    block = baselines(args.run, args.num, args.steps, log=lambda line: print(line, file=sys.stderr))
    if args.print:
        print(block)
    else:
        write_block(DOC, "text_baselines", block, append_if_missing=True)
        write_block(GUIDE, "text_vs_left_to_right", table_of(block), append_if_missing=True)


if __name__ == "__main__":
    main()
