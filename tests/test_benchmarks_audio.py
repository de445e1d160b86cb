"""The gap-length study of benchmarks/audio_recipes.py: which words still sound after a gap."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from audio_recipes import WORD_DB, sounds_after_gap  # noqa: E402

from multidiff.adapters.audio import SpectrogramConfig, gap_mask  # noqa: E402


def test_a_word_sounds_after_the_gap_only_where_a_loud_frame_follows_it():
    spec = SpectrogramConfig(frames=16)
    mask = gap_mask(3, spec, 4 * spec.hop_length / spec.sample_rate)  # frames 6-9 hidden
    assert (mask[0, 0, 0] == 0).nonzero().flatten().tolist() == [6, 7, 8, 9]
    x = torch.full((3, 1, spec.bins, spec.frames), -1.0)  # silence
    x[:, :, :, :4] = 0.8  # the word's onset, loudest
    step = 2 * WORD_DB / (spec.db_ceiling - spec.db_floor)  # WORD_DB in model units
    x[0, :, 3, 12] = 0.8 - 0.9 * step  # within WORD_DB of the loudest, after the gap
    x[1, :, 3, 12] = 0.8 - 1.1 * step  # quieter than that
    x[2, :, 3, 8] = 0.8  # loud, but inside the gap
    assert sounds_after_gap(x, mask, spec).tolist() == [True, False, False]
