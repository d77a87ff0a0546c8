"""Cold start of the AWS Lambda handler: its import time against ``import boto3``.

Each figure is the median of several fresh interpreters (one import each, timed inside the
interpreter, so the interpreter's own start-up is left out), run alternately so that a noisy
moment hits every figure alike. Printed, not asserted: the target (issue #20) is a handler
import at most 1.5x ``import boto3``. Also printed, for information: the handler plus the core
it imports on its first invocation (policy, engine, models), which a cold start pays before
the first reply.

    python bench/bench_cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5

PROBE = """
import json, sys, time
sys.path[:0] = [{root!r}, {root!r} + "/shared"]
t0 = time.perf_counter()
{statement}
print(json.dumps({{"seconds": time.perf_counter() - t0, "tracing": "aws_xray_sdk" in sys.modules}}))
"""

CASES = {
    "import boto3": "import boto3",
    "handler import": "import handlers.aws_lambda",
    "handler + core (first invocation)": "import handlers.aws_lambda as h; h._core()",
}


def once(statement: str) -> dict[str, object]:
    """One fresh interpreter, as Lambda starts one: a clean environment, tracing not enabled."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_LAMBDA_FUNCTION_NAME": "cloudkeep-bench"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), statement=statement)],
                         check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def measure(runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for statement in CASES.values():  # warm the file cache once: not counted
        once(statement)
    for _ in range(runs):
        for name, statement in CASES.items():
            result = once(statement)
            if name == "handler import" and result["tracing"]:
                raise SystemExit("the handler imported aws_xray_sdk with tracing off")
            samples[name].append(float(result["seconds"]))  # type: ignore[arg-type]
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per figure (default 9)")
    args = parser.parse_args()
    medians = measure(args.runs)
    boto3 = medians["import boto3"]
    print(f"cold start, median of {args.runs} fresh interpreters each:")
    for name, seconds in medians.items():
        print(f"  {name:<36} {seconds * 1000:7.1f} ms   {seconds / boto3:5.2f}x import boto3")
    ratio = medians["handler import"] / boto3
    verdict = "within" if ratio <= TARGET else "OVER"
    print(f"AWS handler import / import boto3 = {ratio:.2f}x ({verdict} the {TARGET}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
