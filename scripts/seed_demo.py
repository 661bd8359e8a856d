"""Seeds an MLflow server with demo data for Slipway.

Trains real, small scikit-learn models on datasets that ship with
scikit-learn (nothing is downloaded): several experiments, runs with params
and per-epoch metric histories, and registered models with several versions,
stages and aliases. Does nothing when the demo experiments already exist.

Usage: python seed_demo.py TRACKING_URI
"""

import sys
import warnings

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import ElasticNet, SGDClassifier, SGDRegressor
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# Stage transitions are deprecated in favour of aliases, but teams still use both.
warnings.filterwarnings("ignore", category=FutureWarning)

MARKER_EXPERIMENT = "iris-classification"


def sgd_classifier_run(X_train, X_test, y_train, y_test, alpha, epochs, register_as=None):
    model = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", alpha=alpha, random_state=7))
    scaler, sgd = model.steps[0][1], model.steps[1][1]
    scaler.fit(X_train)
    Xs_train, Xs_test = scaler.transform(X_train), scaler.transform(X_test)
    classes = np.unique(y_train)
    with mlflow.start_run(run_name=f"sgd-alpha-{alpha}") as run:
        mlflow.log_params({"model": "SGDClassifier", "alpha": alpha, "epochs": epochs})
        for epoch in range(epochs):
            sgd.partial_fit(Xs_train, y_train, classes=classes)
            mlflow.log_metrics(
                {
                    "train_loss": log_loss(y_train, sgd.predict_proba(Xs_train), labels=classes),
                    "val_accuracy": accuracy_score(y_test, sgd.predict(Xs_test)),
                },
                step=epoch,
            )
        predictions = model.predict(X_test)
        mlflow.log_metrics(
            {"accuracy": accuracy_score(y_test, predictions), "f1_macro": f1_score(y_test, predictions, average="macro")}
        )
        mlflow.set_tag("framework", "scikit-learn")
        if register_as:
            mlflow.sklearn.log_model(
                model, name="model", registered_model_name=register_as, input_example=X_test.iloc[:3]
            )
        return run.info.run_id


def seed_iris(client):
    data = load_iris(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.3, random_state=1)
    mlflow.set_experiment(MARKER_EXPERIMENT)
    client.set_experiment_tag(mlflow.get_experiment_by_name(MARKER_EXPERIMENT).experiment_id, "team", "vision")
    for alpha in (0.1, 0.01):
        sgd_classifier_run(X_train, X_test, y_train, y_test, alpha, epochs=20)
    for alpha in (0.05, 0.001, 0.0001):
        sgd_classifier_run(X_train, X_test, y_train, y_test, alpha, epochs=30, register_as="iris-classifier")
    # v1 retired, v2 serving, v3 waiting as the challenger.
    client.transition_model_version_stage("iris-classifier", "1", "Archived")
    client.transition_model_version_stage("iris-classifier", "2", "Production", archive_existing_versions=True)
    client.transition_model_version_stage("iris-classifier", "3", "Staging")
    client.set_registered_model_alias("iris-classifier", "production", "2")
    client.set_registered_model_alias("iris-classifier", "challenger", "3")
    client.update_registered_model("iris-classifier", description="Iris species from sepal and petal sizes.")


def seed_diabetes(client):
    data = load_diabetes(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=3)
    mlflow.set_experiment("diabetes-regression")
    client.set_experiment_tag(mlflow.get_experiment_by_name("diabetes-regression").experiment_id, "team", "health")
    grid = [(0.5, 0.5), (0.1, 0.5), (0.01, 0.9), (0.001, 0.1)]
    for index, (alpha, l1_ratio) in enumerate(grid):
        with mlflow.start_run(run_name=f"elasticnet-{alpha}-{l1_ratio}"):
            model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(X_train, y_train)
            predictions = model.predict(X_test)
            mlflow.log_params({"model": "ElasticNet", "alpha": alpha, "l1_ratio": l1_ratio})
            mlflow.log_metrics(
                {
                    "rmse": float(np.sqrt(mean_squared_error(y_test, predictions))),
                    "mae": mean_absolute_error(y_test, predictions),
                    "r2": r2_score(y_test, predictions),
                }
            )
            if index in (1, 3):
                mlflow.sklearn.log_model(
                    model, name="model", registered_model_name="diabetes-regressor", input_example=X_test.iloc[:3]
                )
    with mlflow.start_run(run_name="sgd-regressor"):
        model = SGDRegressor(eta0=0.01, random_state=0)
        mlflow.log_params({"model": "SGDRegressor", "eta0": 0.01, "epochs": 40})
        for epoch in range(40):
            model.partial_fit(X_train, y_train)
            mlflow.log_metrics(
                {
                    "train_rmse": float(np.sqrt(mean_squared_error(y_train, model.predict(X_train)))),
                    "val_rmse": float(np.sqrt(mean_squared_error(y_test, model.predict(X_test)))),
                },
                step=epoch,
            )
    client.transition_model_version_stage("diabetes-regressor", "1", "Production")
    client.transition_model_version_stage("diabetes-regressor", "2", "Staging")
    client.set_registered_model_alias("diabetes-regressor", "production", "1")


def seed_wine(client):
    data = load_wine(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.3, random_state=5)
    mlflow.set_experiment("wine-forest")
    client.set_experiment_tag(mlflow.get_experiment_by_name("wine-forest").experiment_id, "team", "food")
    for max_depth in (2, 4, None):
        with mlflow.start_run(run_name=f"forest-depth-{max_depth}"):
            mlflow.log_params({"model": "RandomForestClassifier", "max_depth": max_depth})
            # Growing the forest tree by tree gives a history per number of trees.
            forest = RandomForestClassifier(max_depth=max_depth, warm_start=True, random_state=0)
            for step, trees in enumerate(range(5, 105, 5)):
                forest.set_params(n_estimators=trees).fit(X_train, y_train)
                mlflow.log_metric("val_accuracy", accuracy_score(y_test, forest.predict(X_test)), step=step)
            mlflow.log_metric("accuracy", accuracy_score(y_test, forest.predict(X_test)))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mlflow.set_tracking_uri(sys.argv[1])
    client = MlflowClient()
    if client.get_experiment_by_name(MARKER_EXPERIMENT) is not None:
        print("demo data already present")
        return
    seed_iris(client)
    seed_diabetes(client)
    seed_wine(client)
    print("demo data seeded")


if __name__ == "__main__":
    main()
