"""An experiment: which polynomial degree generalises best, for two noise levels?

    aliquot run examples/experiment.py                      # every parameter set
    aliquot run examples/experiment.py                      # again: nothing to compute
    aliquot run examples/experiment.py --names deg3,deg9    # only these sets
    aliquot run examples/experiment.py --dry-run            # what would run, and why
    aliquot explain latest                                  # why each stage ran or hit

Each parameter set is a record; the stages run on every record in order, and
the aggregate compares them. A stage's results are cached under the
parameters it *reads*: the sets below differ in ``degree`` but share
``n``/``noise``/``seed`` in pairs, so their data is generated and split once
per noise level and reused, and editing ``degree`` recomputes only ``fit``
and what follows it.
"""

from __future__ import annotations

import math
import random

import attrs

from aliquot import Experiment, Record, aggregate, stage


@attrs.frozen
class Params:
    name: str
    degree: int = 1
    noise: float = 0.2
    n: int = 400
    seed: int = 0


@stage(outputs=["points"], cachers=["json"])
def make_data(record: Record) -> list[list[float]]:
    """Noisy samples of a smooth curve (the same for every degree)."""
    p = record.params
    rng = random.Random(p.seed)
    xs = [rng.uniform(-1, 1) for _ in range(p.n)]
    return [[x, math.sin(3 * x) + 0.5 * x + rng.gauss(0, p.noise)] for x in xs]


@stage(inputs=["points"], outputs=["train", "test"], cachers=["json", "json"])
def split(record: Record, points: list[list[float]]) -> tuple[list[list[float]], ...]:
    """Hold out a quarter of the points."""
    shuffled = points[:]
    random.Random(record.params.seed + 1).shuffle(shuffled)
    cut = len(shuffled) * 3 // 4
    return shuffled[:cut], shuffled[cut:]


def solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (small, dense systems)."""
    size = len(vector)
    rows = [[*row, value] for row, value in zip(matrix, vector, strict=True)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            for c in range(col, size + 1):
                rows[r][c] -= factor * rows[col][c]
    solution = [0.0] * size
    for r in reversed(range(size)):
        tail = sum(rows[r][c] * solution[c] for c in range(r + 1, size))
        solution[r] = (rows[r][size] - tail) / rows[r][r]
    return solution


@stage(inputs=["train"], outputs=["coefficients"], cachers=["json"])
def fit(record: Record, train: list[list[float]]) -> list[float]:
    """Least-squares polynomial of the record's degree (normal equations, lightly ridged)."""
    degree = record.params.degree
    powers = [[x**k for k in range(degree + 1)] for x, _ in train]
    gram = [
        [
            sum(row[i] * row[j] for row in powers) + (1e-9 if i == j else 0.0)
            for j in range(degree + 1)
        ]
        for i in range(degree + 1)
    ]
    moment = [
        sum(row[i] * y for row, (_, y) in zip(powers, train, strict=True))
        for i in range(degree + 1)
    ]
    return solve(gram, moment)


@stage(inputs=["coefficients", "test"], outputs=["rmse"], cachers=["json"])
def evaluate(record: Record, coefficients: list[float], test: list[list[float]]) -> float:
    """Root-mean-square error on the held-out points."""
    errors = [(sum(c * x**k for k, c in enumerate(coefficients)) - y) ** 2 for x, y in test]
    return math.sqrt(sum(errors) / len(errors))


@aggregate(inputs=["rmse"], outputs=["leaderboard", "best"], cachers=["json", "json"])
def compare(
    record: Record, records: list[Record], rmse: dict[Record, float]
) -> tuple[list[str], str]:
    """Every set by held-out error, best first."""
    ranked = sorted(rmse, key=rmse.__getitem__)
    board = [f"{r.name:>7}  degree {r.params.degree}  rmse {rmse[r]:.4f}" for r in ranked]
    return board, ranked[0].name


def get_params() -> list[Params]:
    return [
        Params(f"deg{d}" + ("" if noise == 0.2 else "-noisy"), degree=d, noise=noise)
        for noise in (0.2, 0.6)
        for d in (1, 3, 5, 9)
    ]


experiment = Experiment(
    "polyfit", stages=[make_data, split, fit, evaluate, compare], params=get_params
)

if __name__ == "__main__":
    import aliquot

    with aliquot.Kernel.open(".aliquot") as kernel:
        run = kernel.run(experiment)
        print("\n".join(run["leaderboard"]))
        print("best:", run["best"], "| deg3 rmse:", round(run.records["deg3"].state["rmse"], 4))
