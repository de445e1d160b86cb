"""Prompt-conditioned recipes: sounds and images from sentences, through cross-attention to a frozen,
packaged text encoder (all-MiniLM-L6-v2), with classifier-free guidance on the text.

=================  ==============================================================================
``fashion_text``   a Fashion-MNIST item from a sentence; U-Net "tiny" with cross-attention at
                   14x14 and the pooled prompt in the noise embedding; CPU
``notes_text``     a note (pitch and instrument in words); the notes recipe's temporal U-Net with
                   cross-attention in its middle; one pitch x instrument pair in six held out; CPU
=================  ==============================================================================

Training draws each example's prompt from its class's ``prompts_per_class`` sentences, written by the
grammar of :mod:`multidiff.data.prompts` from the training templates; a share ``label_dropout`` gets
the empty prompt, the null condition. ``multidiff sample RUN --prompt "..."`` samples from any
sentence (a warning when it names nothing the data has; "" samples unconditionally). ``eval.json``
reports each prompt set apart: seen phrasings, phrasings held out of training, and for notes the
held-out pitch x instrument pairs.
"""

from __future__ import annotations

from ..registry import register
from . import audio, images
from .conditioning import PromptBank, PromptWarning, text_encoder

register(images.DOMAIN, images.DESCRIPTIONS)
register(audio.DOMAIN, audio.DESCRIPTIONS)

__all__ = ["PromptBank", "PromptWarning", "audio", "images", "text_encoder"]
