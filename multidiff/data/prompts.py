"""Prompts that describe labelled data in words: a small grammar of real phrasings per dataset.

A prompt-conditioned recipe learns from sentences, not from one template: each
class is named many ways (names and synonyms, word order, for notes the pitch as
a note name, a spelled name, a MIDI number or in octave words, the instrument by
name, variant or family), and a share of the templates is held out of training
entirely, so an evaluation can ask for phrasings the model never read.

=================  ============================================================
:data:`FASHION`    Fashion-MNIST's ten classes ("a pair of sneakers", "an ankle
                   boot, side view", ...)
:data:`NOTES`      the ``notes`` set: 25 pitches (MIDI 48-72) x 6 instruments;
                   :func:`held_out_combination` names the pitch x instrument
                   pairs a recipe keeps out of training
=================  ============================================================

A :class:`PromptGrammar` turns a label into prompts (``prompts(label, ...)``),
and a prompt back into what it names (``names(prompt)``: the vocabulary check
behind the warning for prompts that name nothing the data has).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .audio import NOTE_INSTRUMENTS, NOTE_PITCHES

SPLITS = ("train", "held_out")  # the template sets of a grammar


def with_article(phrase: str) -> str:
    """``phrase`` with "a" or "an" before it ("an ankle boot", "a pair of sneakers")."""
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9#]+", text.lower().replace("t-shirt", "tshirt")))


class _FirstChoice:
    """A stand-in for ``random.Random`` that always takes the first option (the plain wording)."""

    def choice(self, options):
        return options[0]

    def random(self) -> float:
        return 1.0


@dataclass(frozen=True)
class PromptGrammar:
    """Templates with slots, and a ``fill(label, rng) -> {slot: words}`` that names a label's parts.

    ``templates`` are the training phrasings, ``held_out`` the ones kept out of training. ``vocabulary``
    maps each word that names something in the data to a description of it; ``pattern`` (a regular
    expression) catches names that are not single words (a pitch such as "F#4" or "MIDI 67")."""

    name: str
    templates: tuple[str, ...]
    held_out: tuple[str, ...]
    fill: Callable[[int, random.Random], dict]
    vocabulary: dict
    example_template: str
    pattern: str = ""
    partial: tuple[str, ...] = ()  # training phrasings that name only part of a label (notes: pitch or instrument)

    def template_set(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise ValueError(f"unknown template split {split!r}; choose one of: {', '.join(SPLITS)}")
        return self.templates if split == "train" else self.held_out

    def prompt(self, label: int, template: str, rng: random.Random) -> str:
        """``template`` filled for ``label`` (synonyms and pitch forms drawn from ``rng``)."""
        text = template.format(**self.fill(label, rng))
        return text[0].upper() + text[1:] if rng.random() < 0.3 else text

    def prompts(self, label: int, count: int, *, split: str = "train", seed: int = 0) -> list[str]:
        """``count`` prompts for ``label`` from the ``split`` templates, cycling through them in a
        seeded order (different seeds, different words)."""
        return self._cycled(label, self.template_set(split), count, f"{split}:{seed}")

    def partial_prompts(self, label: int, count: int, *, seed: int = 0) -> list[str]:
        """``count`` prompts for ``label`` that name only part of it (:attr:`partial`, cycled in a seeded
        order); a grammar without partial templates refuses ``count > 0``."""
        if count and not self.partial:
            raise ValueError(f"the {self.name} grammar has no partial templates; ask for 0 partial prompts")
        return self._cycled(label, self.partial, count, f"partial:{seed}")

    def _cycled(self, label: int, templates: Sequence[str], count: int, key: str) -> list[str]:
        """``count`` fillings of ``templates`` for ``label``, in an order and with words seeded by ``key``."""
        rng = random.Random(f"{self.name}:{label}:{key}")
        order = list(templates)
        rng.shuffle(order)
        return [self.prompt(label, order[i % len(order)], rng) for i in range(count)]

    def example(self, label: int) -> str:
        """The plain prompt that stands for ``label`` (first names, the note name): "a photo of a
        sneaker", "a trumpet playing G4"."""
        return self.example_template.format(**self.fill(label, _FirstChoice()))

    def names(self, prompt: str) -> list[str]:
        """What in the data ``prompt`` names (empty: nothing the data has)."""
        found = [self.vocabulary[word] for word in sorted(_words(prompt)) if word in self.vocabulary]
        if self.pattern:
            found += [match.group(0) for match in re.finditer(self.pattern, prompt, flags=re.IGNORECASE)]
        return sorted(set(found))

    def known(self, limit: int = 12) -> str:
        """A few of the words the data knows, for messages."""
        return ", ".join(sorted(set(self.vocabulary.values()))[:limit])


# ---------------------------------------------------------------- Fashion-MNIST

FASHION_NAMES = (  # per class: noun phrases that name it (the first is the plain name)
    ("T-shirt", "tee", "short-sleeved top", "crew-neck tee", "top"),
    ("pair of trousers", "pair of pants", "pair of jeans", "pair of slacks", "trousers"),
    ("pullover", "sweater", "jumper", "knitted pullover", "wool sweater"),
    ("dress", "summer dress", "frock", "sleeveless dress", "gown"),
    ("coat", "winter coat", "jacket", "overcoat", "parka"),
    ("sandal", "pair of sandals", "strappy sandal", "summer sandal", "open-toed sandal"),
    ("shirt", "button-up shirt", "collared shirt", "blouse", "dress shirt"),
    ("sneaker", "pair of sneakers", "trainer", "running shoe", "pair of trainers"),
    ("bag", "handbag", "purse", "tote bag", "shoulder bag"),
    ("ankle boot", "pair of ankle boots", "boot", "bootie", "short boot"),
)
_FASHION_PLURALS = {"trousers"}  # named without an article
_FASHION_QUALIFIERS = {"pair", "of", "t", "short", "sleeved", "crew", "neck", "knitted", "wool", "summer", "winter",
                       "sleeveless", "strappy", "open", "toed", "button", "up", "collared", "running", "tote",
                       "shoulder", "dress"}  # "dress" alone names the dress class (below), not a dress shirt


def _fashion_fill(label: int, rng: random.Random) -> dict:
    name = rng.choice(FASHION_NAMES[label])
    return {"a": name if name in _FASHION_PLURALS else with_article(name), "x": name}


def _fashion_vocabulary() -> dict:
    vocabulary = {}
    for names in FASHION_NAMES:
        for name in names:
            for word in _words(name) - _FASHION_QUALIFIERS:
                vocabulary.setdefault(word, names[0])
    vocabulary.update({"dress": "dress", "shirt": "shirt", "tshirt": "T-shirt", "shoe": "sneaker", "shoes": "sneaker",
                       "boots": "ankle boot", "bags": "bag"})
    return vocabulary


FASHION = PromptGrammar(
    name="fashion",
    templates=(
        "{a}", "{x}", "a photo of {a}", "a picture of {a}", "an image of {a}", "{a}, side view",
        "{a} on a plain background", "a grayscale photo of {a}", "product shot: {x}", "draw {a}",
        "show me {a}", "a small photo of {a}", "a catalogue picture of {a}", "{a}, front view",
        "a low-resolution image of {a}", "{x} for sale", "a black and white photo of {a}", "my {x}",
        "a centred photo of {a}", "an item of clothing: {x}",
    ),
    held_out=(
        "here is {a}", "I am looking for {a}", "a thumbnail of {a} in a web shop", "{x}, photographed from above",
        "generate {a} please",
    ),
    fill=_fashion_fill,
    vocabulary=_fashion_vocabulary(),
    example_template="a photo of {a}",
)

# ---------------------------------------------------------------- notes

NOTE_NAMES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NOTE_NAMES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
ORDINALS = {2: "second", 3: "third", 4: "fourth", 5: "fifth"}
INSTRUMENT_NAMES = {  # per NOTE_INSTRUMENTS entry: names, then its family
    "piano": (("piano", "grand piano", "acoustic piano", "upright piano"), "keyboard"),
    "nylon guitar": (("nylon guitar", "classical guitar", "nylon-string guitar", "Spanish guitar"), "plucked string"),
    "violin": (("violin", "fiddle", "solo violin", "bowed violin"), "bowed string"),
    "trumpet": (("trumpet", "brass trumpet", "jazz trumpet", "solo trumpet"), "brass"),
    "flute": (("flute", "concert flute", "silver flute", "transverse flute"), "woodwind"),
    "clarinet": (("clarinet", "soprano clarinet", "wooden clarinet", "reed clarinet"), "single-reed woodwind"),
}
if tuple(INSTRUMENT_NAMES) != tuple(NOTE_INSTRUMENTS):
    raise RuntimeError("INSTRUMENT_NAMES must follow NOTE_INSTRUMENTS' order")
PITCH_PATTERN = (r"\b[A-G](?:#|b|\s(?:sharp|flat))?\s?[2-6]\b|\bmidi(?:\s(?:note|pitch|number))?\s\d{2}\b"
                 r"|\bmiddle C\b|\b[A-G](?:#|b|\s(?:sharp|flat))?\sin\s(?:the\s(?:second|third|fourth|fifth)\soctave"
                 r"|octave\s[2-6])\b")


def pitch_words(midi: int, rng: random.Random) -> str:
    """One way of naming MIDI pitch ``midi``: "G4", "F sharp 4", "MIDI 67", "the G in the fourth
    octave", "middle C" ..."""
    octave, pitch_class = midi // 12 - 1, midi % 12
    sharp, flat = NOTE_NAMES_SHARP[pitch_class], NOTE_NAMES_FLAT[pitch_class]
    name = rng.choice((sharp, flat))
    spelled = name.replace("#", " sharp").replace("b", " flat") if len(name) > 1 else name
    forms = [f"{name}{octave}", f"{spelled} {octave}", f"MIDI {midi}", f"MIDI note {midi}",
             f"the {spelled} in the {ORDINALS[octave]} octave", f"{spelled} in octave {octave}"]
    if midi == 60:
        forms.append("middle C")
    return rng.choice(forms)


def _notes_fill(label: int, rng: random.Random) -> dict:
    pitch = NOTE_PITCHES[label // len(NOTE_INSTRUMENTS)]
    names, family = INSTRUMENT_NAMES[tuple(NOTE_INSTRUMENTS)[label % len(NOTE_INSTRUMENTS)]]
    instrument = rng.choice(names)
    return {"pitch": pitch_words(pitch, rng), "instrument": instrument, "a_instrument": with_article(instrument),
            "family": family}


def _notes_vocabulary() -> dict:
    vocabulary = {}
    for key, (names, _) in INSTRUMENT_NAMES.items():
        for name in names:
            for word in _words(name) - {"solo", "jazz", "concert", "silver", "wooden", "grand", "upright",
                                        "acoustic", "string", "nylon", "spanish", "soprano", "reed", "bowed",
                                        "brass", "transverse", "classical"}:
                vocabulary[word] = key
    return vocabulary


NOTES = PromptGrammar(
    name="notes",
    templates=(
        "{a_instrument} playing {pitch}", "{pitch} on the {instrument}", "the {instrument} plays {pitch}",
        "a single {instrument} note at {pitch}", "{instrument}, {pitch}", "play {pitch} on {a_instrument}",
        "one {instrument} note, {pitch}", "{pitch} played by {a_instrument}", "the note {pitch} on {a_instrument}",
        "{a_instrument} sound at {pitch}", "{pitch}, {instrument}", "a {family} instrument, the {instrument}, "
        "playing {pitch}", "{instrument} holding {pitch}", "a short {instrument} tone: {pitch}",
        "{pitch} from the {family} section: {a_instrument}", "record {a_instrument} on {pitch}",
    ),
    held_out=(
        "could you play {pitch} on {a_instrument}?", "I want to hear {a_instrument} sustain {pitch}",
        "{pitch} performed on {a_instrument}", "listen: {a_instrument}, note {pitch}",
    ),
    fill=_notes_fill,
    vocabulary=_notes_vocabulary(),
    example_template="{a_instrument} playing {pitch}",
    pattern=PITCH_PATTERN,
    partial=(  # four that name only the pitch, four only the instrument
        "a note at {pitch}", "{a_instrument}", "{pitch}", "{a_instrument} playing a note", "play {pitch}",
        "a note on the {instrument}", "a tone: {pitch}", "the sound of {a_instrument}",
    ),
)


def held_out_combination(label: int) -> bool:
    """True for the notes labels whose pitch x instrument pair a prompt recipe keeps out of training:
    one pair in six, spread so that every pitch keeps at least four instruments and every instrument
    at least twenty pitches."""
    pitch_index, instrument = divmod(int(label), len(NOTE_INSTRUMENTS))
    return (pitch_index + 2 * instrument) % 6 == 0


GRAMMARS = {"fashion": FASHION, "notes": NOTES}


def grammar_for(dataset: str) -> PromptGrammar:
    if dataset not in GRAMMARS:
        raise ValueError(f"no prompt grammar for dataset {dataset!r}; there are: {', '.join(GRAMMARS)}")
    return GRAMMARS[dataset]


def prompt_table(grammar: PromptGrammar, labels: Sequence[int], count: int, *, split: str = "train",
                 seed: int = 0) -> dict[int, list[str]]:
    """``count`` prompts per label (see :meth:`PromptGrammar.prompts`)."""
    return {int(label): grammar.prompts(int(label), count, split=split, seed=seed) for label in labels}


__all__ = ["FASHION", "FASHION_NAMES", "GRAMMARS", "INSTRUMENT_NAMES", "NOTES", "PITCH_PATTERN", "PromptGrammar",
           "SPLITS", "grammar_for", "held_out_combination", "pitch_words", "prompt_table", "with_article"]
