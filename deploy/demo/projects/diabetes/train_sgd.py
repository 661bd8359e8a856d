"""SGD regression on the diabetes data, one metric point per epoch.

Usage: python train_sgd.py --epochs N --eta0 RATE --penalty l2|l1|elasticnet
"""

import argparse

import mlflow
import mlflow.sklearn
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import evaluate, load_data

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, required=True)
parser.add_argument("--eta0", type=float, required=True)
parser.add_argument("--penalty", choices=["l2", "l1", "elasticnet"], required=True)
args = parser.parse_args()

X_train, X_test, y_train, y_test = load_data()
model = make_pipeline(StandardScaler(), SGDRegressor(eta0=args.eta0, penalty=args.penalty, random_state=42))
scaler, sgd = model.steps[0][1], model.steps[1][1]
scaler.fit(X_train)

with mlflow.start_run():
    for epoch in range(args.epochs):
        sgd.partial_fit(scaler.transform(X_train), y_train)
        metrics = evaluate(model, X_test, y_test)
        mlflow.log_metrics(metrics, step=epoch)
        print(f"epoch {epoch + 1}/{args.epochs}: rmse={metrics['rmse']:.3f}", flush=True)
    mlflow.sklearn.log_model(model, name="model", input_example=X_test.head(3))
    print("logged the model", flush=True)
