"""ElasticNet on the diabetes data. Usage: python train.py ALPHA L1_RATIO

Launched by Slipway (or `mlflow run`), MLFLOW_RUN_ID names the run that
already holds the parameters; this script adds metrics and the model.
"""

import sys

import mlflow
import mlflow.sklearn
from sklearn.linear_model import ElasticNet

from common import evaluate, load_data

alpha, l1_ratio = float(sys.argv[1]), float(sys.argv[2])
X_train, X_test, y_train, y_test = load_data()
print(f"training ElasticNet(alpha={alpha}, l1_ratio={l1_ratio}) on {len(X_train)} rows", flush=True)

with mlflow.start_run():
    model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(X_train, y_train)
    metrics = evaluate(model, X_test, y_test)
    mlflow.log_metrics(metrics)
    print("metrics: " + ", ".join(f"{key}={value:.4f}" for key, value in metrics.items()), flush=True)
    mlflow.sklearn.log_model(model, name="model", input_example=X_test.head(3))
    print("logged the model", flush=True)
