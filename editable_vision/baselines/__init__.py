"""Table 3's other ways to patch a model, on the same footing as Editable Training, and section 4.2's analysis.

* :mod:`.ewc`: GD+EWC / RMSProp+EWC, an editor wrapper adding a Fisher-weighted distance to the original weights.
* :mod:`.dknn`: Deep k-Nearest Neighbours (scikit-learn ``NearestNeighbors``) edited by flipping neighbours' labels.
* :mod:`.cnp`: Editable+CNP, a condition vector from an encoder on chain-3 activations and the target class.
* :mod:`.methods`: one evaluator for all of them (test error, drawdown, success rate, steps or n/a).
* :mod:`.table3`, :mod:`.analysis`: the commands ``python -m editable_vision.baselines {table3,analysis}``.
"""
from .cnp import ConditionalClassifier, cnp_loss, train_cnp
from .dknn import DeepKNN, FlipResult, layer_embeddings
from .ewc import EWCEditor, ewc_penalty, fisher_diagonal
from .methods import CNPMethod, DkNNMethod, EditMethod, GradientMethod, Outcome, evaluate_method

__all__ = [
    "CNPMethod", "ConditionalClassifier", "DeepKNN", "DkNNMethod", "EWCEditor", "EditMethod", "FlipResult",
    "GradientMethod", "Outcome", "cnp_loss", "evaluate_method", "ewc_penalty", "fisher_diagonal",
    "layer_embeddings", "train_cnp",
]
