"""DkNN: predictions by neighbour votes over layers, and edits by minimal label flips."""
from itertools import combinations

import numpy as np
import pytest
import torch

from editable_vision.baselines.dknn import DeepKNN, layer_embeddings, votes
from editable_vision.models import cifar_resnet18


def _random_knn(seed, layers, k, n=40, classes=4, dim=3):
    rng = np.random.default_rng(seed)
    embeddings = [rng.normal(size=(n, dim)) for _ in range(layers)]
    labels = rng.integers(0, classes, size=n)
    return DeepKNN(embeddings, labels, classes, k), rng, embeddings


def _prediction(knn, neighbours, labels):
    return int(votes(neighbours[None], labels, knn.num_classes).argmax(1)[0])


def test_prediction_is_the_majority_of_votes_over_layers():
    embeddings = [np.array([[0.0], [1.0], [2.0], [10.0]]), np.array([[5.0], [0.0], [0.1], [0.2]])]
    knn = DeepKNN(embeddings, np.array([0, 1, 1, 2]), num_classes=3, k=2)
    neighbours, distances = knn.neighbours([np.array([[0.4]]), np.array([[0.15]])])
    # layer 0: points 0, 1; layer 1: points 2, 3 (nearest first)
    assert neighbours[0].tolist() == [[0, 1], [2, 3]]
    assert np.allclose(distances[0], [[0.4, 0.6], [0.05, 0.05]])
    assert votes(neighbours, knn.labels, 3).tolist() == [[1, 2, 1]]
    assert knn.predict(neighbours).tolist() == [1]


@pytest.mark.parametrize("seed", range(12))
def test_flips_make_the_target_the_prediction_and_stop_there(seed):
    knn, rng, _ = _random_knn(seed, layers=3, k=7)
    query = [rng.normal(size=(1, 3)) for _ in range(3)]
    neighbours, distances = knn.neighbours(query)
    before = knn.predict(neighbours)[0]
    target = int((before + 1 + rng.integers(0, knn.num_classes - 1)) % knn.num_classes)
    result = knn.flip(neighbours[0], distances[0], target)
    assert result.success and result.num_flips >= 1
    assert knn.predict(neighbours)[0] == target
    assert set(result.indices) <= set(neighbours[0].reshape(-1).tolist())
    assert len(set(result.indices)) == result.num_flips
    # one fewer flip would not do: undoing any single flip loses the target
    for point in result.indices:
        labels = knn.labels.copy()
        labels[point] = knn.original[point]
        assert _prediction(knn, neighbours[0], labels) != target
    knn.restore(result)
    assert np.array_equal(knn.labels, knn.original)


@pytest.mark.parametrize("seed", range(12))
def test_flips_are_the_fewest_possible_with_one_layer(seed):
    knn, rng, _ = _random_knn(100 + seed, layers=1, k=9, classes=3)
    query = [rng.normal(size=(1, 3))]
    neighbours, distances = knn.neighbours(query)
    target = int((knn.predict(neighbours)[0] + 1) % knn.num_classes)
    result = knn.flip(neighbours[0], distances[0], target)
    knn.restore(result)
    assert knn.predict(neighbours)[0] != target
    # brute force: no set of num_flips - 1 neighbours, relabelled as the target, makes it the prediction
    candidates = [p for p in neighbours[0].reshape(-1).tolist() if knn.labels[p] != target]
    for subset in combinations(candidates, result.num_flips - 1):
        labels = knn.labels.copy()
        labels[list(subset)] = target
        assert _prediction(knn, neighbours[0], labels) != target


def test_no_flip_when_the_target_is_already_predicted():
    knn, rng, _ = _random_knn(3, layers=2, k=5)
    neighbours, distances = knn.neighbours([rng.normal(size=(1, 3)) for _ in range(2)])
    result = knn.flip(neighbours[0], distances[0], int(knn.predict(neighbours)[0]))
    assert result.success and result.num_flips == 0


def test_layer_embeddings_from_named_parts():
    torch.manual_seed(0)
    model = cifar_resnet18(num_classes=3, in_channels=1, width=2).train()
    images = torch.randn(5, 1, 8, 8)
    flat, pooled = (layer_embeddings(model, images, ["chain3", "chain4"], pool=p, batch_size=2)
                    for p in ("flatten", "avg"))
    assert [e.shape for e in flat] == [(5, 8 * 2 * 2), (5, 16 * 1 * 1)]
    assert [e.shape for e in pooled] == [(5, 8), (5, 16)]
    assert all(m.training for m in model.modules())  # eval mode inside, the caller's mode restored
    with torch.no_grad():
        model.eval()
        expected = model[:4](images).flatten(1).numpy()
    np.testing.assert_allclose(flat[0], expected, rtol=1e-5, atol=1e-6)


def test_bad_inputs_give_clear_errors():
    embeddings, labels = [np.zeros((5, 2))], np.array([0, 1, 0, 1, 0])
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            DeepKNN(embeddings, labels, 2, k)
    with pytest.raises(ValueError, match="exceeds the 5 training points"):
        DeepKNN(embeddings, labels, 2, 6)
    with pytest.raises(ValueError, match="target class 7 out of range"):
        DeepKNN(embeddings, labels, 2, 2).flip(np.zeros((1, 2), dtype=int), np.zeros((1, 2)), 7)
    with pytest.raises(ValueError, match="parts of the model"):
        layer_embeddings(cifar_resnet18(3, 1, 2), torch.zeros(1, 1, 8, 8), ["chain9"])
    with pytest.raises(ValueError, match="unknown pooling"):
        layer_embeddings(cifar_resnet18(3, 1, 2), torch.zeros(1, 1, 8, 8), ["chain1"], pool="max")
