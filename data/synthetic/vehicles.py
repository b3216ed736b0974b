"""Box models of road users: cars, vans and trucks (body, cabin or cargo, wheels), pedestrians
(body and head).

A model is a ground-truth box (full extents, centred half its height above the
ground) and the box parts that draw it, each with its own colour. Offsets are in
the box frame (x forward, y left, z up from the box centre); every part lies
inside the box, so points on a part are inside the object's GT box. Wheels are
one box per axle, 1 cm wider than the body so they show from the side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse4d.data.classes import CAR, OTHER_VEHICLE, PEDESTRIAN

#: car paints (albedo)
PAINTS = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1], [0.5, 0.5, 0.55],
                   [0.9, 0.7, 0.1], [0.2, 0.45, 0.25], [0.95, 0.95, 0.93], [0.35, 0.12, 0.1], [0.3, 0.55, 0.75],
                   [0.6, 0.6, 0.6], [0.9, 0.45, 0.1]], np.float32)
TYRE = np.array([0.05, 0.05, 0.05], np.float32)
SKIN = np.array([[0.95, 0.8, 0.68], [0.85, 0.65, 0.5], [0.6, 0.42, 0.3], [0.4, 0.27, 0.18]], np.float32)
CLOTH = np.array([[0.1, 0.12, 0.3], [0.15, 0.15, 0.15], [0.6, 0.55, 0.45], [0.75, 0.1, 0.15], [0.2, 0.4, 0.7],
                  [0.9, 0.9, 0.88], [0.25, 0.45, 0.2], [0.85, 0.7, 0.2], [0.5, 0.3, 0.5]], np.float32)


@dataclass
class Model:
    """One road user: class id, GT box ``size [3]`` (m) and ``parts``: ``(offset [3], size [3], color [3])``."""

    cls: int
    kind: str
    size: tuple[float, float, float]
    parts: list[tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]]


def glass(paint: np.ndarray) -> np.ndarray:
    """Window colour: dark, tinted by the paint a little."""
    return (0.2 * paint + np.array([0.05, 0.07, 0.1])).astype(np.float32)


def car(rng: np.random.Generator) -> Model:
    """A saloon/hatchback: 3.9-4.8 m long, body, cabin and two axles."""
    L, W, H = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.9), rng.uniform(1.38, 1.55)
    paint = PAINTS[rng.integers(len(PAINTS))]
    z0, lc = -H / 2, rng.uniform(0.48, 0.58) * L
    Wb = W + 0.02
    parts = [((0.0, 0.0, z0 + 0.575), (L, W, 0.55), paint),
             ((-0.06 * L, 0.0, z0 + 0.5 * (0.85 + H)), (lc, W - 0.14, H - 0.85), glass(paint))]
    parts += _axles(L, Wb, z0, 0.64, (L / 2 - 0.8, -(L / 2 - 0.8)))
    return Model(CAR, "car", (L, Wb, H), parts)


def van(rng: np.random.Generator) -> Model:
    """A van: 4.8-5.5 m long and 1.9-2.4 m tall, short bonnet, tall body, windscreen, two axles."""
    L, W, H = rng.uniform(4.8, 5.5), rng.uniform(1.9, 2.05), rng.uniform(1.9, 2.4)
    paint = PAINTS[rng.integers(len(PAINTS))]
    z0, Wb = -H / 2, W + 0.02
    parts = [((0.0, 0.0, z0 + 0.65), (L, W, 0.7), paint),
             ((-0.4, 0.0, z0 + 0.5 * (1.0 + H)), (L - 0.8, W, H - 1.0), paint),
             ((L / 2 - 0.6, 0.0, z0 + 0.5 * (1.0 + H - 0.2)), (0.4, W - 0.1, H - 1.2), glass(paint))]
    parts += _axles(L, Wb, z0, 0.7, (L / 2 - 0.9, -(L / 2 - 0.9)))
    return Model(CAR, "van", (L, Wb, H), parts)


def truck(rng: np.random.Generator) -> Model:
    """A lorry: 7-9.5 m long, cab, cargo box, front axle and a rear tandem."""
    L, W, H = rng.uniform(7.0, 9.5), 2.5, rng.uniform(3.0, 3.6)
    paint = PAINTS[rng.integers(len(PAINTS))]
    cargo = PAINTS[rng.integers(len(PAINTS))] if rng.random() < 0.5 else np.float32([0.9, 0.9, 0.88])
    z0, Wb = -H / 2, W + 0.02
    cab_top = min(3.0, H - 0.1)
    parts = [((L / 2 - 1.1, 0.0, z0 + 0.5 * (0.6 + cab_top)), (2.2, 2.4, cab_top - 0.6), paint),
             ((-1.25, 0.0, z0 + 0.5 * (0.95 + H)), (L - 2.5, W, H - 0.95), cargo),
             ((L / 2 - 1.2, 0.0, z0 + 0.45), (0.9, Wb, 0.9), TYRE),
             ((-L / 2 + 1.8, 0.0, z0 + 0.45), (2.2, Wb, 0.9), TYRE)]
    return Model(OTHER_VEHICLE, "truck", (L, Wb, H), parts)


def pedestrian(rng: np.random.Generator) -> Model:
    """A person 1.55-1.92 m tall and 0.4-0.55 m wide: body (clothes) and head (skin)."""
    H, W = rng.uniform(1.55, 1.92), rng.uniform(0.4, 0.55)
    z0 = -H / 2
    cloth, skin = CLOTH[rng.integers(len(CLOTH))], SKIN[rng.integers(len(SKIN))]
    parts = [((0.0, 0.0, z0 + 0.43 * H), (0.3, W, 0.86 * H), cloth),
             ((0.0, 0.0, z0 + 0.93 * H), (0.22, 0.2, 0.13 * H), skin)]
    return Model(PEDESTRIAN, "pedestrian", (0.4, W + 0.05, H), parts)


def vehicle(rng: np.random.Generator, van_share: float = 0.25) -> Model:
    """A car, or a van with probability ``van_share``."""
    return van(rng) if rng.random() < van_share else car(rng)


def _axles(L: float, W: float, z0: float, dia: float, xs: tuple[float, ...]) -> list:
    return [((x, 0.0, z0 + dia / 2), (dia, W, dia), TYRE) for x in xs]
