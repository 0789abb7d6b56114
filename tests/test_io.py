"""Save / load of k-NN models: npz + JSON, never pickle, versioned, identical predictions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastcls
from fastcls import io as fio


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    X = rng.integers(0, 256, (300, 24)).astype(np.uint8)
    X[50] = X[51]  # duplicate rows: ties in the saved model must resolve the same way
    Q = rng.integers(0, 256, (40, 24)).astype(np.uint8)
    Q[0] = X[50]
    return X, Q


def _roundtrip(model, path):
    model.save(path)
    return fastcls.load(path)


@pytest.mark.parametrize(
    ("labels", "params"),
    [
        (np.array(["cat", "dog", "ship"]), {"k": 5, "metric": "l1"}),
        (np.array([-3, 7, 12]), {"k": 3, "metric": "l2", "weights": "distance"}),
        (np.array([0.0, 1.0]), {"k": 1, "metric": "sqeuclidean", "n_jobs": 1}),
        (np.array(["a", "b"], dtype=object), {"k": 4, "backend": "numpy"}),
    ],
)
def test_roundtrip_identical_predictions(tmp_path, data, labels, params):
    X, Q = data
    y = labels[np.arange(X.shape[0]) % len(labels)]
    clf = fastcls.KNearestNeighbor(**params).fit(X, y)
    loaded = _roundtrip(clf, tmp_path / "model.npz")
    assert type(loaded) is fastcls.KNearestNeighbor
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.predict(Q), clf.predict(Q))
    np.testing.assert_array_equal(loaded.predict_proba(Q), clf.predict_proba(Q))
    for a, b in zip(loaded.kneighbors(Q), clf.kneighbors(Q), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert loaded.n_features_in_ == 24 and loaded.n_samples_fit_ == 300


def test_metadata_is_json_with_a_version(tmp_path, data):
    X, _ = data
    path = tmp_path / "m.npz"
    fastcls.KNearestNeighbor(k=2).fit(X, np.arange(300) % 2).save(path)
    meta = fio.read_metadata(path)
    assert meta["format"] == "fastcls-model"
    assert meta["format_version"] == fio.FORMAT_VERSION
    assert meta["class"] == "KNearestNeighbor"
    assert meta["params"]["k"] == 2
    assert meta["backend"] == "numba"
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["classes", "fit_X", "metadata", "y"]
        assert all(npz[name].dtype.kind != "O" for name in npz.files)
        np.testing.assert_array_equal(npz["fit_X"], X)


def _rewrite(path, out, **meta_changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["metadata"][()]))
    meta.update(meta_changes)
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)


def test_unknown_format_version_is_refused(tmp_path, data):
    X, _ = data
    path = tmp_path / "m.npz"
    fastcls.KNearestNeighbor().fit(X, np.zeros(300)).save(path)
    _rewrite(path, tmp_path / "future.npz", format_version=999)
    with pytest.raises(ValueError, match="format_version 999"):
        fastcls.load(tmp_path / "future.npz")
    _rewrite(path, tmp_path / "other.npz", format="something-else")
    with pytest.raises(ValueError, match="not a fastcls model file"):
        fastcls.load(tmp_path / "other.npz")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCLS_TEST_PWNED", raising=False)

    class Payload:
        def __reduce__(self):
            return (exec, ("import os; os.environ['FASTCLS_TEST_PWNED'] = '1'",))

    meta = {"format": "fastcls-model", "format_version": 1, "class": "KNearestNeighbor"}
    meta.update(params={}, n_features_in_=1, n_samples_fit_=1)
    evil = tmp_path / "evil.npz"
    np.savez(
        evil,
        metadata=np.array(json.dumps(meta)),
        classes=np.array([Payload()], dtype=object),
        y=np.zeros(1, np.int64),
        fit_X=np.zeros((1, 1)),
    )
    with pytest.raises(fastcls.ModelFileError, match="dtype object is not allowed"):
        fastcls.load(evil)
    obj_meta = tmp_path / "evil_meta.npz"
    np.savez(obj_meta, metadata=np.array([Payload()], dtype=object))
    with pytest.raises(ValueError):
        fastcls.load(obj_meta)
    assert "FASTCLS_TEST_PWNED" not in os.environ


def test_bad_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a fastcls model file"):
        fastcls.load(garbage)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no metadata"):
        fastcls.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        fastcls.load(tmp_path / "missing.npz")


def test_save_needs_a_fitted_model(tmp_path):
    with pytest.raises(fastcls.NotFittedError):
        fastcls.KNearestNeighbor().save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="save supports"):
        fio.save(object(), tmp_path / "m.npz")


def test_memmap_fitted_model_round_trips(tmp_path, data):
    X, Q = data
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(ro, np.arange(300) % 5)
    loaded = _roundtrip(clf, tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(Q), clf.predict(Q))


@pytest.mark.parametrize(
    ("index", "params"),
    [("Flat", {}), ("IVF8,Flat", {"nprobe": 2}), ("HNSW16", {"efSearch": 32})],
)
def test_faiss_index_round_trip(tmp_path, data, index, params):
    pytest.importorskip("faiss")
    X, Q = data
    y = np.arange(X.shape[0]) % 4
    clf = fastcls.KNearestNeighbor(k=5, backend="faiss", index=index, **params).fit(X, y)
    path = tmp_path / "faiss.npz"
    clf.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert "faiss_index" in npz.files and npz["faiss_index"].dtype == np.uint8
        assert "fit_X" not in npz.files  # the index holds the vectors
    loaded = fastcls.load(path)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.predict(Q), clf.predict(Q))
    for a, b in zip(loaded.kneighbors(Q), clf.kneighbors(Q), strict=True):
        np.testing.assert_array_equal(a, b)
