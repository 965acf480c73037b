"""Deterministic procedural scenes with captions: coloured shapes on flat backgrounds (64x64 since v2).

Scene kinds: one object, two objects joined by "and" (v1's), two objects in a stated relation ("a red circle
to the left of a blue square"; v2) and one to three objects of one colour and shape counted ("two green
triangles"; v2). Geometry is defined on v1's 32x32 canvas and scaled by SIZE / 32, so v1's scenes keep their
proportions.

Everything is drawn from a seeded numpy Generator, so a (seed, index) pair always yields the same
batch. Shapes are rendered with 4x4 supersampling so edges are anti-aliased like a real picture.

Held out from training (used only by the evaluation set, see HELDOUT_*):
  * phrasing: certain (position phrase, background phrase) pairs never appear together;
  * combinations: certain (foreground colour, shape, background colour) triples never appear.
All words of the held-out captions do appear in training, so the test is about composition.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

SIZE = 64
S = SIZE / 32  # v1's geometry (in 32x32 pixels) scaled to the canvas
SUPERSAMPLE = 4

# RGB values of the named colours; the TS checker (src/eval/colors.ts) uses the same table.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (135, 50, 175),
    "orange": (245, 135, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle"]
POSITIONS = ["left", "right", "top", "bottom", "center"]
SIZES = ["small", "big"]

# Centroid offsets from the image centre, in pixels (32x32 canvas).
POS_OFFSET = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}
SIZE_RANGE = {"small": (9.0, 11.0), "big": (16.0, 18.0)}
TWO_OBJECT_SIZE = (9.0, 12.0)

SIZE_WORDS = {"small": ["small", "little", "tiny"], "big": ["big", "large"]}
POS_PHRASES = {
    "left": ["on the left", "at the left", "to the left", "on the left side"],
    "right": ["on the right", "at the right", "to the right", "on the right side"],
    "top": ["at the top", "on top", "near the top", "at the top of the picture"],
    "bottom": ["at the bottom", "on the bottom", "near the bottom", "at the bottom of the picture"],
    "center": ["in the center", "in the middle", "at the center", "in the middle of the picture"],
}
# Background phrase templates; {c} is the colour. Index matters for the held-out pairs below.
BG_PHRASES = [
    "on a {c} background",
    "on {c} background",
    ", {c} background",
    "with a {c} background",
    "against a {c} background",
    "over a {c} backdrop",
]
PREFIXES = ["", "", "", "a picture of ", "an image of ", "a drawing of ", "draw "]

# v2: "A <relation> B" means A stands on that side of B. Index matters for HELDOUT_RELATION_PAIRS.
RELATIONS = ["left", "right", "above", "below"]
RELATION_PHRASES = {
    "left": ["to the left of", "left of", "on the left of"],
    "right": ["to the right of", "right of", "on the right of"],
    "above": ["above", "on top of", "just above"],
    "below": ["below", "under", "beneath"],
}
# v2: counts. {n} is the number word, {c} the colour, {s} the shape (plural for two and three).
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
COUNT_PHRASES = ["{n} {c} {s}", "{n} {c} {s} together", "exactly {n} {c} {s}"]
# (relation or count phrase index, background phrase index) pairs never seen together in training.
HELDOUT_RELATION_PAIRS = {(0, 4), (1, 3), (2, 0)}
HELDOUT_COUNT_PAIRS = {(0, 4), (1, 1), (2, 0)}
# Share of training scenes of each kind (single and "and" pairs keep v1's 70/30 split between them).
KIND_SHARES = {"v1": 0.4, "relation": 0.3, "count": 0.3}

# (position phrase index, background phrase index) pairs never seen together in training.
HELDOUT_PHRASE_PAIRS = {(0, 4), (1, 3), (2, 0), (3, 1), (1, 5)}
# (foreground colour, shape, background colour) never seen in single-object training scenes.
HELDOUT_TRIPLES = {
    ("red", "circle", "yellow"),
    ("blue", "triangle", "white"),
    ("green", "square", "black"),
    ("purple", "circle", "orange"),
    ("yellow", "triangle", "blue"),
    ("orange", "square", "green"),
    ("white", "circle", "purple"),
    ("black", "triangle", "red"),
}

TOKEN_RE = re.compile(r"\w+|[^\w\s]+")


@dataclass
class Obj:
    color: str
    shape: str
    size: str
    position: str
    cx: float
    cy: float
    diameter: float


@dataclass
class Scene:
    background: str
    objects: list[Obj]
    caption: str
    # What the caption states (the checker only scores stated attributes).
    stated: dict = field(default_factory=dict)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(rng: np.random.Generator, obj: Obj, with_size: bool, with_article: bool) -> str:
    words = []
    if with_size:
        words.append(SIZE_WORDS[obj.size][rng.integers(len(SIZE_WORDS[obj.size]))])
    words += [obj.color, obj.shape]
    text = " ".join(words)
    return f"{article(text)} {text}" if with_article else text


def tokenize(text: str) -> list[str]:
    """Mirror of the exported tokenizer: lowercase, then split into words and punctuation runs."""
    return TOKEN_RE.findall(text.lower())


def vocabulary() -> list[str]:
    """Every word the caption generator can produce (plus the special tokens first)."""
    words: set[str] = set()
    fragments = [*COLOR_NAMES, *SHAPES, "a an and , background backdrop"]
    for v in SIZE_WORDS.values():
        fragments += v
    for v in POS_PHRASES.values():
        fragments += v
    fragments += [p.format(c="x") for p in BG_PHRASES] + PREFIXES
    for v in RELATION_PHRASES.values():
        fragments += v
    fragments += list(NUMBER_WORDS.values()) + [p.format(n="", c="", s="") for p in COUNT_PHRASES]
    fragments += [sh + "s" for sh in SHAPES]
    for f in fragments:
        words.update(tokenize(f))
    words.discard("x")
    return ["[PAD]", "[UNK]", "[BOS]", "[EOS]", *sorted(words)]


def place(rng: np.random.Generator, position: str, diameter: float, offset: float) -> tuple[float, float]:
    dx, dy = POS_OFFSET[position]
    jitter = rng.uniform(-1.0, 1.0, size=2)
    return S * (16.0 + dx * offset + jitter[0]), S * (16.0 + dy * offset + jitter[1])


# How often a caption states positions (one object, two objects). Defaults are the first sitting's; the second
# sitting of the committed run raised them (train.py --p-pos), as position was the attribute learnt slowest.
P_POS = {"one": 0.7, "two": 0.5}


def sample_scene(rng: np.random.Generator, heldout: bool = False, kind: str = "v1") -> Scene:
    """One random scene and caption of a kind ("v1": one object or two joined by "and"; "relation"; "count").
    heldout=True draws only held-out phrasings (for the eval set)."""
    draw = {"v1": _sample_scene, "relation": _sample_relation, "count": _sample_count}[kind]
    while True:
        scene = draw(rng, heldout)
        if scene is not None:
            return scene


def sample_training_scene(rng: np.random.Generator) -> Scene:
    u = rng.random()
    kind = "v1" if u < KIND_SHARES["v1"] else "relation" if u < KIND_SHARES["v1"] + KIND_SHARES["relation"] else "count"
    return sample_scene(rng, kind=kind)


def _background_phrase(bg: str, bg_i: int) -> str:
    bgp = BG_PHRASES[bg_i].replace("a {c}", article(bg) + " {c}").format(c=bg)
    return bgp if bgp.startswith(",") else " " + bgp


def _with_prefix(rng: np.random.Generator, text: str) -> str:
    prefix = PREFIXES[rng.integers(len(PREFIXES))]
    if prefix and not text.startswith(("a ", "an ")) and prefix.endswith("of "):
        prefix = ""
    return prefix + text


def _sample_relation(rng: np.random.Generator, heldout: bool) -> Scene | None:
    """Two objects, A <relation> B: A stands on that side of B, both of any shape, three distinct colours."""
    colors = list(rng.choice(len(COLOR_NAMES), size=3, replace=False))
    bg = COLOR_NAMES[colors[0]]
    rel = RELATIONS[rng.integers(4)]
    sign = -1 if rel in ("left", "above") else 1
    horizontal = rel in ("left", "right")
    gap = rng.uniform(6.5, 9.0)  # half the distance between the centres, 32-pixel units
    across = rng.uniform(-3.0, 3.0)  # both objects shifted together across the axis
    objs = []
    for i, side in enumerate((sign, -sign)):
        d = rng.uniform(*TWO_OBJECT_SIZE)
        j = rng.uniform(-1.0, 1.0, size=2)
        along, other = 16.0 + side * gap + j[0], 16.0 + across + j[1]
        cx, cy = (along, other) if horizontal else (other, along)
        pos = ("left" if side < 0 else "right") if horizontal else ("top" if side < 0 else "bottom")
        objs.append(Obj(COLOR_NAMES[colors[i + 1]], SHAPES[rng.integers(3)], "small", pos, S * cx, S * cy, S * d))
    say_bg = rng.random() < 0.75 or heldout
    rel_i = int(rng.integers(3))
    bg_i = int(rng.integers(len(BG_PHRASES)))
    if heldout:
        rel_i, bg_i = sorted(HELDOUT_RELATION_PAIRS)[rng.integers(len(HELDOUT_RELATION_PAIRS))]
    elif say_bg and (rel_i, bg_i) in HELDOUT_RELATION_PAIRS:
        return None
    a = object_phrase(rng, objs[0], False, with_article=rng.random() < 0.8)
    b = object_phrase(rng, objs[1], False, with_article=True)
    text = f"{a} {RELATION_PHRASES[rel][rel_i]} {b}"
    if say_bg:
        text += _background_phrase(bg, bg_i)
    stated = {
        "background": bg if say_bg else None,
        "count": 2,
        "objects": [{"color": o.color, "shape": o.shape, "position": None, "size": None} for o in objs],
        "relation": rel,
    }
    return Scene(bg, objs, _with_prefix(rng, text), stated)


def _sample_count(rng: np.random.Generator, heldout: bool) -> Scene | None:
    """One to three objects of one colour and shape, small, anywhere, apart from each other."""
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
    colors = list(rng.choice(len(COLOR_NAMES), size=2, replace=False))
    bg, color = COLOR_NAMES[colors[0]], COLOR_NAMES[colors[1]]
    shape = SHAPES[rng.integers(3)]
    d = rng.uniform(*TWO_OBJECT_SIZE)
    centres: list[tuple[float, float]] = []
    for _ in range(200):  # rejection sampling: centres at least d + 3 apart (32-pixel units), inside the canvas
        c = tuple(rng.uniform(d / 2 + 2.5, 32 - d / 2 - 2.5, size=2))
        if all((c[0] - e[0]) ** 2 + (c[1] - e[1]) ** 2 >= (d + 3) ** 2 for e in centres):
            centres.append(c)
            if len(centres) == n:
                break
    if len(centres) < n:
        return None
    objs = [Obj(color, shape, "small", "center", S * cx, S * cy, S * d) for cx, cy in centres]
    say_bg = rng.random() < 0.75 or heldout
    cnt_i = int(rng.integers(len(COUNT_PHRASES)))
    bg_i = int(rng.integers(len(BG_PHRASES)))
    if heldout:
        cnt_i, bg_i = sorted(HELDOUT_COUNT_PAIRS)[rng.integers(len(HELDOUT_COUNT_PAIRS))]
    elif say_bg and (cnt_i, bg_i) in HELDOUT_COUNT_PAIRS:
        return None
    text = COUNT_PHRASES[cnt_i].format(n=NUMBER_WORDS[n], c=color, s=shape if n == 1 else shape + "s")
    if say_bg:
        text += _background_phrase(bg, bg_i)
    stated = {
        "background": bg if say_bg else None,
        "count": n,
        "objects": [{"color": color, "shape": shape, "position": None, "size": None}],
        "counted": True,
    }
    return Scene(bg, objs, _with_prefix(rng, text), stated)


def _sample_scene(rng: np.random.Generator, heldout: bool) -> Scene | None:
    two = rng.random() < 0.3
    n = 2 if two else 1
    colors = list(rng.choice(len(COLOR_NAMES), size=n + 1, replace=False))
    bg = COLOR_NAMES[colors[0]]
    objs: list[Obj] = []
    if two:
        axis = rng.integers(2)
        pair = ["left", "right"] if axis == 0 else ["top", "bottom"]
        if rng.random() < 0.5:
            pair.reverse()
        for i in range(2):
            d = rng.uniform(*TWO_OBJECT_SIZE)
            cx, cy = place(rng, pair[i], d, 8.0)
            shape = SHAPES[rng.integers(3)]
            objs.append(Obj(COLOR_NAMES[colors[i + 1]], shape, "small", pair[i], cx, cy, S * d))
    else:
        size = SIZES[rng.integers(2)]
        pos = POSITIONS[rng.integers(5)]
        d = rng.uniform(*SIZE_RANGE[size])
        cx, cy = place(rng, pos, d, 8.0 if size == "small" else 6.5)
        objs.append(Obj(COLOR_NAMES[colors[1]], SHAPES[rng.integers(3)], size, pos, cx, cy, S * d))

    say_bg = rng.random() < 0.75 or heldout
    say_pos = rng.random() < (P_POS["two"] if two else P_POS["one"]) or heldout
    say_size = (not two) and (rng.random() < 0.5)
    bg_i = int(rng.integers(len(BG_PHRASES)))
    pos_i = int(rng.integers(4))
    if heldout:
        pos_i, bg_i = list(HELDOUT_PHRASE_PAIRS)[rng.integers(len(HELDOUT_PHRASE_PAIRS))]
    elif say_bg and say_pos and (pos_i, bg_i) in HELDOUT_PHRASE_PAIRS:
        return None
    if not two:
        triple = (objs[0].color, objs[0].shape, bg)
        if not heldout and triple in HELDOUT_TRIPLES:
            return None

    parts = []
    for o in objs:
        p = object_phrase(rng, o, say_size, with_article=rng.random() < 0.8)
        if say_pos:
            p += " " + POS_PHRASES[o.position][pos_i]
        parts.append(p)
    text = " and ".join(parts)
    if say_bg:
        bgp = BG_PHRASES[bg_i].replace("a {c}", article(bg) + " {c}").format(c=bg)
        if not bgp.startswith(","):
            bgp = " " + bgp
        text += bgp
    prefix = PREFIXES[rng.integers(len(PREFIXES))]
    if prefix and not text.startswith(("a ", "an ")) and prefix.endswith("of "):
        prefix = ""
    caption = prefix + text
    stated = {
        "background": bg if say_bg else None,
        "count": n,
        "objects": [
            {
                "color": o.color,
                "shape": o.shape,
                "position": o.position if say_pos else None,
                "size": o.size if say_size else None,
            }
            for o in objs
        ],
    }
    return Scene(bg, objs, caption, stated)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    n = SIZE * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(c, c, indexing="xy")


_GX, _GY = _grid()


def coverage(obj: Obj) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape on the canvas. (cx, cy) is the area centroid, in pixels."""
    x, y, d = _GX, _GY, obj.diameter
    if obj.shape == "circle":
        m = (x - obj.cx) ** 2 + (y - obj.cy) ** 2 <= (d / 2) ** 2
    elif obj.shape == "square":
        s = d * 0.9  # a square of side d looks much heavier than a circle of diameter d
        m = (np.abs(x - obj.cx) <= s / 2) & (np.abs(y - obj.cy) <= s / 2)
    else:
        base, h = d * 1.15, d * 1.05
        apex = obj.cy - 2 * h / 3  # the centroid of a triangle lies 2/3 of the way down from the apex
        t = (y - apex) / h
        m = (t >= 0) & (t <= 1) & (np.abs(x - obj.cx) <= t * base / 2)
    m = m.astype(np.float32).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE)
    return m.mean(axis=(1, 3))


def render(scene: Scene) -> np.ndarray:
    """uint8 [SIZE, SIZE, 3] image."""
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = COLORS[scene.background]
    for o in scene.objects:
        a = coverage(o)[..., None]
        img = img * (1 - a) + np.asarray(COLORS[o.color], np.float32) * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    """n training images as float32 [n, 3, SIZE, SIZE] in [-1, 1] and their captions."""
    imgs = np.empty((n, 3, SIZE, SIZE), np.float32)
    caps = []
    for i in range(n):
        s = sample_training_scene(rng)
        imgs[i] = render(s).transpose(2, 0, 1) / 127.5 - 1.0
        caps.append(s.caption)
    return imgs, caps


def eval_set(n: int = 96, n_relation: int = 48, n_count: int = 48, seed: int = 12345) -> list[Scene]:
    """The fixed held-out evaluation scenes (deterministic): v1's 96 (the same prompts as v1's eval), then
    relation and count scenes from their own seeds."""
    rng = np.random.default_rng(seed)
    v1 = [sample_scene(rng, heldout=True) for _ in range(n)]
    rng = np.random.default_rng(seed + 1)
    rel = [sample_scene(rng, heldout=True, kind="relation") for _ in range(n_relation)]
    rng = np.random.default_rng(seed + 2)
    cnt = [sample_scene(rng, heldout=True, kind="count") for _ in range(n_count)]
    return v1 + rel + cnt
