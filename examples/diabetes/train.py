"""Train the classic Azure ML tutorial model: Ridge(alpha=0.5) on scikit-learn's diabetes data.

The data set ships inside scikit-learn, so nothing is downloaded. Writes model.pkl
next to this script (or to the path given as the first argument).
"""

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("model.pkl")
    features, target = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.5).fit(features, target)
    joblib.dump(model, out)
    print(out)


if __name__ == "__main__":
    main()
