"""An independent yardstick for a prepared dataset's baselines (trusted side: reads labels).

    .venv/bin/python bench/check_baselines.py --dataset math-pairs [--weak l3] [--strong E]

For the weak and the strong encoder, fits scikit-learn's ``LogisticRegressionCV`` on
standardized features with the *true* labels of the unlabeled split (the ceiling's
recipe, none of aar's head code) and prints test accuracy on the public half, the private
half and the whole test split, next to aar's own weak teacher and ceiling on the same
examples. aar's ceiling should be close to the scikit-learn fit of the strong encoder;
a large difference is a bug in the baselines. Run ``aar setup -d DATASET`` first.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aar.data.prepare import prepare
from aar.data.registry import default_encoders
from aar.data.splits import PUBLIC
from aar.w2s.baselines import ceiling, weak_teacher
from aar.w2s.features import split_features


def halves(correct: np.ndarray, public: np.ndarray) -> str:
    return (f"public {correct[public].mean():.3f}  private {correct[~public].mean():.3f}  "
            f"whole {correct.mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="sentiment")
    ap.add_argument("--weak")
    ap.add_argument("--strong")
    a = ap.parse_args()
    weak, strong = default_encoders(a.dataset, a.weak, a.strong)
    prep = prepare(a.dataset)
    labels = prep.vault.labels
    ids = prep.workspace.ids("test")
    y_test = np.array([labels[i] for i in ids])
    y_unlabeled = prep.vault.split_labels("unlabeled")
    public = np.isin(ids, prep.vault.splits[PUBLIC])
    print(f"{a.dataset}: {len(y_unlabeled)} unlabeled, {len(ids)} test "
          f"({public.sum()} public)")
    for name, probs in (("aar weak teacher (" + weak + ")", weak_teacher(prep, weak).test_probs),
                        ("aar ceiling (" + strong + ")", ceiling(prep, strong).test_probs)):
        print(f"{name:44} {halves((probs >= 0.5) == (y_test == 1), public)}")
    for enc in (weak, strong):
        feats = split_features(prep.workspace, enc)
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=np.logspace(-4, 2, 13), cv=5, max_iter=5000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(feats["unlabeled"], y_unlabeled)
        correct = model.predict(feats["test"]) == y_test
        print(f"{'sklearn on true labels (' + enc + ')':44} {halves(correct, public)}")


if __name__ == "__main__":
    main()
