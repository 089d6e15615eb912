import aliquot
from aliquot.testing import make_kernel


@aliquot.task(outputs=["data"])
def load(n: int) -> list[int]:
    return list(range(n))


@aliquot.task(outputs=["mean"])
def mean(data: list[int]) -> float:
    return sum(data) / len(data)


def test_issue_example_runs_in_memory() -> None:
    with make_kernel() as kernel:
        run = kernel.run([load, mean], inputs={"n": 100}, targets=["mean"])
    assert run.status == "succeeded" and run["mean"] == 49.5
