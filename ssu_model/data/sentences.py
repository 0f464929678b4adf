"""The sample's English sentences: templates with negation, intensifiers, hedges and contrast.

``sentence(rng, neutral)`` draws one (text, text sentiment in [-1, 1]); the sample generator
(ssu_model/data/sample.py) draws every utterance's text with it, and the benchmarks draw distinct
inputs with ``distinct_sentences``.
"""

from __future__ import annotations

import numpy as np

TOPICS = (  # (noun phrase, plural)
    ("movie", False), ("film", False), ("plot", False), ("story", False), ("acting", False),
    ("cast", False), ("soundtrack", False), ("music", False), ("ending", False),
    ("dialogue", False), ("script", False), ("pacing", False), ("main character", False),
    ("villain", False), ("special effects", True), ("cinematography", False), ("humor", False),
    ("sequel", False), ("trailer", False), ("opening scene", False), ("love story", False),
    ("fight scenes", True), ("costumes", True), ("animation", False), ("twist", False),
    ("jokes", True), ("lead actress", False), ("camera work", False),
)
POS_ADJ = (
    ("good", 1.0), ("nice", 1.0), ("fun", 1.2), ("enjoyable", 1.3), ("funny", 1.3),
    ("great", 2.0), ("beautiful", 2.0), ("touching", 1.8), ("clever", 1.6), ("wonderful", 2.4),
    ("fantastic", 2.5), ("amazing", 2.6), ("brilliant", 2.7), ("decent", 0.6), ("solid", 1.0),
    ("charming", 1.6), ("entertaining", 1.4), ("impressive", 1.9),
)
NEG_ADJ = (
    ("bad", -1.0), ("boring", -1.4), ("dull", -1.2), ("weak", -1.0), ("annoying", -1.5),
    ("predictable", -0.9), ("confusing", -1.1), ("disappointing", -2.0), ("terrible", -2.5),
    ("awful", -2.5), ("horrible", -2.7), ("painful", -2.2), ("mediocre", -0.7),
    ("forgettable", -1.0), ("stupid", -2.0), ("slow", -0.8), ("messy", -1.2), ("cheesy", -0.9),
)
INTENSIFIERS = (
    ("", 1.0), ("", 1.0), ("", 1.0), ("really", 1.3), ("very", 1.3), ("so", 1.35),
    ("extremely", 1.5), ("incredibly", 1.5), ("absolutely", 1.5), ("pretty", 0.85),
    ("kind of", 0.6), ("somewhat", 0.6), ("a little", 0.55), ("quite", 1.1),
)
ATTRIBUTIVE_INTENSIFIERS = (  # those that read well before "adj noun"
    ("", 1.0), ("", 1.0), ("really", 1.3), ("very", 1.3), ("truly", 1.4), ("pretty", 0.85),
    ("rather", 0.8), ("surprisingly", 1.2),
)
HEDGES = (  # sentence prefixes and how much they soften the sentiment
    ("i think", 0.85), ("i guess", 0.75), ("i feel like", 0.85), ("maybe", 0.7),
    ("honestly", 1.1), ("personally", 1.0), ("i would say", 0.9), ("overall", 1.0),
)
VERBS = (  # "i <verb> the <topic>"
    ("liked", 1.5), ("loved", 2.5), ("enjoyed", 1.8), ("appreciated", 1.4), ("adored", 2.7),
    ("hated", -2.5), ("disliked", -1.5), ("regretted watching", -2.0), ("could not stand", -2.4),
)
NEUTRAL = (
    "i watched it {when} and then we talked about the {topic}",
    "so the {topic} is about a {person} who {action}",
    "i saw it {when} with my {friend}",
    "the movie runs about {num} minutes and there is a long scene {place}",
    "we went to the {venue} {when} and i bought some popcorn",
    "it came out {when} and i think it is based on a book",
    "the {topic} has a scene {place} where the {person} {action}",
    "there is a part {place} and then the {topic} changes",
    "my {friend} told me about it so i went to see it {when}",
    "i do not know what else to say about the {topic}",
    "the {person} {action} and then the story moves {place}",
    "it is the second movie from that director and it came out {when}",
    "the {topic} starts {place} and the {person} meets a {friend}",
    "i rented it {when} because my {friend} wanted to see it",
)
WHEN = ("last week", "on friday", "yesterday", "a few days ago", "over the weekend",
        "last month", "on a tuesday", "this morning", "two years ago")
PERSON = ("young woman", "police officer", "teacher", "farmer", "family", "old man",
          "detective", "student", "pilot", "doctor")
ACTION = ("moves to a new city", "loses a job", "travels across the country",
          "looks for a missing brother", "opens a small restaurant", "starts a band",
          "finds an old letter", "goes back to school")
FRIEND = ("brother", "sister", "roommate", "best friend", "cousin", "dad", "mom", "coworker")
PLACE = ("at the airport", "in the middle", "near the end", "at the beginning",
         "in a hospital", "on a train", "in the kitchen", "at a wedding")
VENUE = ("theater", "mall", "cinema downtown", "drive in")


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _be(topic: tuple[str, bool], past: bool = True) -> tuple[str, str]:
    plural = topic[1]
    if past:
        return ("were", "weren't") if plural else ("was", "wasn't")
    return ("are", "aren't") if plural else ("is", "isn't")


def _adjective(rng: np.random.Generator, sign: float) -> tuple[str, float]:
    return _pick(rng, POS_ADJ if sign > 0 else NEG_ADJ)


def _clause(rng: np.random.Generator, sign: float, topic=None) -> tuple[str, float]:
    """One sentiment clause with its value; ``sign`` is the polarity before negation."""
    topic = topic or _pick(rng, TOPICS)
    form = int(rng.integers(6))
    be, be_neg = _be(topic, past=bool(rng.integers(4)))
    if form == 0:  # the plot was really good
        adj, v = _adjective(rng, sign)
        intens, k = _pick(rng, INTENSIFIERS)
        words = f"the {topic[0]} {be} {intens} {adj}"
        return " ".join(words.split()), v * k
    if form == 1:  # negation: the plot was not very good / the acting wasn't bad at all
        adj, v = _adjective(rng, -sign)  # negating the opposite polarity gives ``sign``
        neg = be_neg if rng.integers(2) else f"{be} not"
        intens, k = _pick(rng, INTENSIFIERS[:6])
        tail = " at all" if rng.integers(3) == 0 else ""
        words = f"the {topic[0]} {neg} {intens} {adj}{tail}"
        return " ".join(words.split()), -0.55 * v * k * (1.3 if tail else 1.0)
    if form == 2:  # i really liked the soundtrack / i didn't like the ending
        if rng.integers(4) == 0:
            verb, v = _pick(rng, [x for x in VERBS if x[1] * -sign > 0])
            if verb.startswith(("could", "regretted")):
                verb, v = ("liked", 1.5) if sign < 0 else ("hated", -2.5)
            return f"i didn't {_base_verb(verb)} the {topic[0]}", -0.6 * v
        verb, v = _pick(rng, [x for x in VERBS if x[1] * sign > 0])
        intens = "really " if rng.integers(3) == 0 else ""
        return f"i {intens}{verb} the {topic[0]}", v * (1.25 if intens else 1.0)
    if form == 3:  # it was a really great movie
        adj, v = _adjective(rng, sign)
        intens, k = _pick(rng, ATTRIBUTIVE_INTENSIFIERS)
        noun = _pick(rng, ("movie", "film", "story", "experience", "ride"))
        art = "an" if (intens or adj)[0] in "aeiou" else "a"
        words = f"it was {art} {intens} {adj} {noun}"
        return " ".join(words.split()), v * k
    if form == 4:  # nothing about the villain was interesting / i would not call the ending clever
        adj, v = _adjective(rng, -sign)
        if rng.integers(2):
            return f"nothing about the {topic[0]} was {adj}", -0.6 * v
        return f"i would not call the {topic[0]} {adj}", -0.5 * v
    # form 5: the jokes made me laugh / the ending made me feel sick
    if sign > 0:
        what, v = _pick(rng, (("laugh", 1.5), ("smile", 1.3), ("cry in a good way", 2.0),
                               ("want to see it again", 2.2)))
    else:
        what, v = _pick(rng, (("fall asleep", -1.6), ("want to leave", -2.3),
                               ("feel sick", -2.2), ("check my phone", -1.2)))
    return f"the {topic[0]} made me {what}", v


def _base_verb(verb: str) -> str:
    return {"liked": "like", "loved": "love", "enjoyed": "enjoy", "appreciated": "appreciate",
            "adored": "adore", "hated": "hate", "disliked": "dislike"}.get(verb, "like")


def _neutral(rng: np.random.Generator) -> str:
    tpl = _pick(rng, NEUTRAL)
    return tpl.format(
        when=_pick(rng, WHEN), topic=_pick(rng, TOPICS)[0], person=_pick(rng, PERSON),
        action=_pick(rng, ACTION), friend=_pick(rng, FRIEND), place=_pick(rng, PLACE),
        num=_pick(rng, ("ninety", "two hours", "a hundred", "eighty")).replace(" hours", ""),
        venue=_pick(rng, VENUE),
    )


def sentence(rng: np.random.Generator, neutral: bool) -> tuple[str, float]:
    """One utterance and its text sentiment in [-3, 3] (0 for neutral text)."""
    if neutral:
        return _neutral(rng), 0.0
    sign = 1.0 if rng.integers(2) else -1.0
    shape = int(rng.integers(10))
    if shape <= 3:  # single clause, maybe hedged
        text, v = _clause(rng, sign)
        if rng.integers(3) == 0:
            hedge, k = _pick(rng, HEDGES)
            text, v = f"{hedge} {text}", v * k
    elif shape <= 5:  # contrast: the second clause decides
        first, v1 = _clause(rng, -sign)
        second, v2 = _clause(rng, sign)
        if rng.integers(3) == 0:
            text = f"although {first} {second}"
        else:
            text = f"{first} but {second}"
        v = v2 + 0.1 * v1
    elif shape <= 7:  # two agreeing clauses
        first, v1 = _clause(rng, sign)
        second, v2 = _clause(rng, sign)
        link = _pick(rng, ("and", "and also", "and honestly"))
        text, v = f"{first} {link} {second}", 0.6 * (v1 + v2)
    elif shape == 8:  # because-clause: reason explains the verdict
        first, v1 = _clause(rng, sign, topic=("movie", False))
        second, v2 = _clause(rng, sign)
        text, v = f"{first} because {second}", 0.7 * v1 + 0.4 * v2
    else:  # neutral narration followed by a verdict
        text, v = _clause(rng, sign)
        text = f"{_neutral(rng)} and {text}"
        v = 0.9 * v
    return text, float(np.clip(v, -3.0, 3.0))


def distinct_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences of the generator's templates (MOSI-like, ~12 words; 30% neutral),
    the same list for the same ``seed``: text inputs for the benchmarks."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 77, 0]))  # sample.py's _rng(seed, 77, 0)
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(sentence(rng, bool(rng.random() < 0.3))[0])
    return list(seen)
