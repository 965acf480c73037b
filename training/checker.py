"""A quick Python twin of the TS checker (src/eval/checker.ts), used to watch training progress.

The TS checker is the one that counts for `npm run eval`; this one exists so a training run can report
foreground/background/shape/position accuracy on the held-out set without leaving Python. Sizes are relative to
the canvas (v1's constants were set on 32x32), so it scores v1's 32x32 and v2's 64x64 pictures alike. v2 adds
`relation` (two objects, right colours and shapes, the first on the stated side of the second) and `number`
(exactly n components, all of the stated colour).
"""
from __future__ import annotations

import numpy as np

from data import COLORS, COLOR_NAMES

PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], np.float32)


def nearest(rgb: np.ndarray) -> str:
    return COLOR_NAMES[int(np.argmin(((PALETTE - rgb) ** 2).sum(1)))]


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components, largest first, as boolean masks."""
    h, w = mask.shape
    seen = np.zeros_like(mask, bool)
    out = []
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0, x0] or seen[y0, x0]:
                continue
            comp = np.zeros_like(mask, bool)
            stack = [(y0, x0)]
            seen[y0, x0] = True
            while stack:
                y, x = stack.pop()
                comp[y, x] = True
                for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
            out.append(comp)
    out.sort(key=lambda c: -int(c.sum()))
    return out


def describe_object(img: np.ndarray, comp: np.ndarray, bg: str) -> dict:
    f = img.astype(np.float32)
    color = nearest(np.median(f[comp], axis=0))
    b = PALETTE[COLOR_NAMES.index(bg)]
    axis = PALETTE[COLOR_NAMES.index(color)] - b
    alpha = np.clip(((f - b) @ axis) / max(float(axis @ axis), 1e-6), 0, 1) * comp
    area = float(alpha.sum())
    extent = float(alpha.max(0).sum() * alpha.max(1).sum())
    fill = area / extent if extent > 0 else 0.0
    shape = "square" if fill > 0.88 else "circle" if fill > 0.66 else "triangle"
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    ax = float((alpha * xs).sum() / max(area, 1e-6))
    ay = float((alpha * ys).sum() / max(area, 1e-6))
    cx, cy = (ax - w / 2) * 32 / w, (ay - h / 2) * 32 / h  # in v1's 32-pixel units
    if abs(cx) < 3.5 and abs(cy) < 3.5:
        pos = "center"
    elif abs(cx) >= abs(cy):
        pos = "left" if cx < 0 else "right"
    else:
        pos = "top" if cy < 0 else "bottom"
    return {"color": color, "shape": shape, "position": pos, "area": area, "fill": fill, "cx": ax, "cy": ay}


def describe(img: np.ndarray) -> dict:
    """img: uint8 [H, W, 3]. Background from the border, objects = components that differ from it."""
    f = img.astype(np.float32)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
    bg_rgb = np.median(border, axis=0)
    bg = nearest(bg_rgb)
    ref = PALETTE[COLOR_NAMES.index(bg)]
    mask = np.sqrt(((f - ref) ** 2).sum(-1)) > 80
    min_area = max(1, round(12 / 1024 * mask.size))  # 12 px on a 32x32 canvas
    comps = [c for c in components(mask) if c.sum() >= min_area]
    return {"background": bg, "objects": [describe_object(img, c, bg) for c in comps[:3]], "count": len(comps)}


def score(img: np.ndarray, stated: dict) -> dict[str, bool]:
    """Per-attribute correctness of one image against what its caption stated."""
    d = describe(img)
    res: dict[str, bool] = {}
    if stated["background"]:
        res["background"] = d["background"] == stated["background"]
    want = stated["objects"]
    if stated.get("counted"):
        n = stated["count"]
        res["number"] = d["count"] == n and all(o["color"] == want[0]["color"] for o in d["objects"][:n])
        return res
    if stated.get("relation"):
        res["relation"] = relation_ok(d, want, stated["relation"])
        return res
    if len(want) == 1:
        w = want[0]
        o = d["objects"][0] if d["objects"] else None
        res["color"] = bool(o) and o["color"] == w["color"]
        res["shape"] = bool(o) and o["shape"] == w["shape"]
        if w["position"]:
            res["position"] = bool(o) and o["position"] == w["position"]
    else:
        res["count"] = d["count"] == 2
        got = d["objects"][:2]
        res["color"] = sorted(o["color"] for o in got) == sorted(w["color"] for w in want)
        by_color = {o["color"]: o for o in got}
        if all(w["position"] for w in want):
            res["position"] = all(w["color"] in by_color and by_color[w["color"]]["position"] == w["position"] for w in want)
        res["shape"] = all(w["color"] in by_color and by_color[w["color"]]["shape"] == w["shape"] for w in want)
    return res


def relation_ok(d: dict, want: list[dict], relation: str) -> bool:
    """Exactly two objects; each stated colour's object has the stated shape; the first stands on the stated side
    of the second (that axis's offset larger than the other's)."""
    if d["count"] != 2:
        return False
    by_color = {o["color"]: o for o in d["objects"][:2]}
    a, b = by_color.get(want[0]["color"]), by_color.get(want[1]["color"])
    if a is None or b is None or a is b or a["shape"] != want[0]["shape"] or b["shape"] != want[1]["shape"]:
        return False
    dx, dy = a["cx"] - b["cx"], a["cy"] - b["cy"]
    return {
        "left": dx < 0 and abs(dx) > abs(dy),
        "right": dx > 0 and abs(dx) > abs(dy),
        "above": dy < 0 and abs(dy) > abs(dx),
        "below": dy > 0 and abs(dy) > abs(dx),
    }[relation]
