"""Creates the benchmark's experiment: N runs with params and metrics.

Writes through MLflow's own client straight into the SQLite store, before
the server starts, because 10,000 runs over HTTP take minutes.

Usage: python seed_bench.py BACKEND_STORE_URI RUNS
"""

import random
import sys
import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

EXPERIMENT = "bench-10k-runs"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    store_uri, runs = sys.argv[1], int(sys.argv[2])
    client = MlflowClient(tracking_uri=store_uri)
    if client.get_experiment_by_name(EXPERIMENT) is not None:
        print(f"{EXPERIMENT} already present")
        return
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location="mlflow-artifacts:/bench")
    rng = random.Random(42)
    started = time.time()
    base_ms = int(started * 1000) - runs * 1000
    for index in range(runs):
        start_ms = base_ms + index * 1000
        run = client.create_run(experiment_id, start_time=start_ms, run_name=f"run-{index:05d}")
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("auc", rng.random(), start_ms, 0),
                Metric("loss", rng.random() * 2, start_ms, 0),
                Metric("accuracy", rng.random(), start_ms, 0),
            ],
            params=[
                Param("lr", str(rng.choice([0.1, 0.01, 0.001]))),
                Param("optimizer", rng.choice(["adam", "sgd", "rmsprop"])),
                Param("batch_size", str(rng.choice([32, 64, 128]))),
            ],
        )
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=start_ms + 800)
        if index % 1000 == 999:
            print(f"{index + 1} runs in {time.time() - started:.0f} s", flush=True)
    print(f"seeded {runs} runs into experiment {experiment_id}")


if __name__ == "__main__":
    main()
