"""A small, real pipeline: fit a line to noisy data and score it on held-out points.

    aliquot run examples/quickstart.py                    # every task in this file
    aliquot run examples/quickstart.py --input n=5000     # inputs override defaults
    aliquot run examples/quickstart.py --target metrics   # only what `metrics` needs
    python examples/quickstart.py                         # the same, from Python

Each parameter binds to the task output of the same name (or to a run input,
or to its default), so the tasks below form a graph:

    make_data -> split -> fit -> evaluate -> report
                      \\______________/
"""

from __future__ import annotations

import math
import random

import aliquot


@aliquot.task(outputs=["points"])
def make_data(
    n: int = 2000, slope: float = 2.5, intercept: float = -1.0, noise: float = 0.3, seed: int = 0
) -> list[tuple[float, float]]:
    """Points on a line, with Gaussian noise."""
    rng = random.Random(seed)
    xs = [rng.uniform(-5, 5) for _ in range(n)]
    return [(x, slope * x + intercept + rng.gauss(0, noise)) for x in xs]


@aliquot.task(outputs=["train", "test"])
def split(points: list[tuple[float, float]], test_fraction: float = 0.25, seed: int = 0):
    """Shuffle, then hold out a fraction of the points for testing."""
    shuffled = points[:]
    random.Random(seed + 1).shuffle(shuffled)
    cut = int(len(shuffled) * (1 - test_fraction))
    return shuffled[:cut], shuffled[cut:]


@aliquot.task(outputs=["model"])
def fit(train: list[tuple[float, float]]) -> dict[str, float]:
    """Ordinary least squares, closed form."""
    n = len(train)
    mean_x = sum(x for x, _ in train) / n
    mean_y = sum(y for _, y in train) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in train)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in train)
    slope = sxy / sxx
    return {"slope": slope, "intercept": mean_y - slope * mean_x}


@aliquot.task(outputs=["metrics"])
def evaluate(model: dict[str, float], test: list[tuple[float, float]]) -> dict[str, float]:
    """Root-mean-square error and R² on the held-out points."""
    predictions = [model["slope"] * x + model["intercept"] for x, _ in test]
    ys = [y for _, y in test]
    mean_y = sum(ys) / len(ys)
    ss_res = sum((y - p) ** 2 for y, p in zip(ys, predictions, strict=True))
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    return {"rmse": math.sqrt(ss_res / len(ys)), "r2": 1 - ss_res / ss_tot, "n_test": len(ys)}


@aliquot.task(outputs=["report"])
def report(model: dict[str, float], metrics: dict[str, float]) -> str:
    return (
        f"y = {model['slope']:.3f} x + {model['intercept']:.3f}   "
        f"(rmse {metrics['rmse']:.3f}, r2 {metrics['r2']:.4f} on {metrics['n_test']} points)"
    )


if __name__ == "__main__":
    with aliquot.Kernel.open(".aliquot") as kernel:
        run = kernel.run([make_data, split, fit, evaluate, report], inputs={"n": 2000})
        print(run["report"])
