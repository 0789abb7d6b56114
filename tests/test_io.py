"""Saved models: every estimator round-trips bit for bit, load trusts nothing in the file
(one ModelFileError naming file and field), save is atomic and writes exactly its path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

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


def _outputs(model, Q):
    """Everything a model answers, for bit-for-bit comparison."""
    if isinstance(model, fastcls.KNearestNeighbor):
        dist, idx = model.kneighbors(Q)
        return [model.predict(Q), model.predict_proba(Q), dist, idx]
    if isinstance(model, fastcls.FeatureScaler):
        return [model.transform(Q), model.inverse_transform(Q)]
    return [model.predict(Q), model.decision_function(Q), model.predict_proba(Q)]


def _assert_identical(a, b, Q):
    for x, y in zip(_outputs(a, Q), _outputs(b, Q), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        if x.dtype.kind == "O":
            assert [type(v) for v in x.tolist()] == [type(v) for v in y.tolist()]
            assert x.tolist() == y.tolist()
        else:
            assert x.tobytes() == y.tobytes()


# every kind of label fit accepts; each must come back with its type
LABELS = {
    **{dt: np.array([3, 7, 12], dtype=dt) for dt in ("i1", "i2", "i4", "i8", "u1", "u2", "u4")},
    "u8": np.array([0, 2**63, 2**64 - 1], dtype=np.uint64),
    "bool": np.array([False, True]),
    "f2": np.array([-1.0, 2.0], dtype=np.float16),
    "f4": np.array([0.0, 1.0, 5.0], dtype=np.float32),
    "f8": np.array([-3.0, 7.0]),
    "str": np.array(["cat", "dog", "ship"]),
    "bytes": np.array([b"a\xff", b"b", b"\x00c"]),
    "object-str": np.array(["a", "b"], dtype=object),
    "object-int": np.array([-(2**40), 5, 10**12], dtype=object),
}


def _labels(name, n):
    labels = LABELS[name]
    return labels[np.arange(n) % len(labels)]


@pytest.mark.parametrize("labels", sorted(LABELS))
@pytest.mark.parametrize(
    "make",
    [
        lambda: fastcls.KNearestNeighbor(k=5, metric="l1"),
        lambda: fastcls.KNearestNeighbor(k=3, weights="distance", backend="numpy"),
        lambda: fastcls.LinearSVM(n_iters=5, seed=0),
        lambda: fastcls.Softmax(n_iters=5, seed=np.random.default_rng(3)),
    ],
    ids=["knn-numba", "knn-numpy", "svm", "softmax"],
)
def test_every_estimator_and_label_kind_round_trips(tmp_path, data, make, labels):
    X, Q = data
    y = _labels(labels, X.shape[0])
    model = make().fit(X, y)
    loaded = _roundtrip(model, tmp_path / "model.npz")
    assert type(loaded) is type(model)
    assert loaded.classes_.dtype == model.classes_.dtype
    assert [type(c) for c in loaded.classes_.tolist()] == [type(c) for c in model.classes_.tolist()]
    _assert_identical(model, loaded, Q)
    assert loaded.score(X, y) == model.score(X, y)  # bytes labels once scored 0.0 here


def test_params_round_trip_including_a_generator_seed(tmp_path, data):
    X, _ = data
    rng = np.random.default_rng(5)
    svm = fastcls.LinearSVM(n_iters=3, reg=0.5, batch_size=16, seed=rng).fit(X, np.arange(300) % 3)
    loaded = _roundtrip(svm, tmp_path / "svm")
    params = loaded.get_params()
    assert params.pop("seed").bit_generator.state == rng.bit_generator.state
    assert params == {k: v for k, v in svm.get_params().items() if k != "seed"}
    with pytest.raises(TypeError, match="seed"):
        fastcls.LinearSVM(n_iters=2, seed=np.random.Generator(np.random.MT19937(1))).fit(
            X, np.arange(300) % 2
        ).save(tmp_path / "mt")


@pytest.mark.parametrize("with_mean", [True, False])
def test_feature_scaler_round_trips(tmp_path, data, with_mean):
    X, Q = data
    scaler = fastcls.FeatureScaler(with_mean=with_mean).fit(X.astype(np.float64))
    _assert_identical(scaler, _roundtrip(scaler, tmp_path / "scaler.npz"), Q)


def test_dask_backend_round_trips(tmp_path, data):
    pytest.importorskip("dask")
    X, Q = data
    clf = fastcls.KNearestNeighbor(k=4, backend="dask").fit(X, np.arange(300) % 4)
    loaded = _roundtrip(clf, tmp_path / "dask.npz")
    assert loaded.backend == "dask"
    _assert_identical(clf, loaded, Q)


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize(
    ("index", "params"),
    [("Flat", {}), ("IVF8,Flat", {"nprobe": 2}), ("HNSW16", {"efSearch": 32})],
)
def test_faiss_index_round_trip(tmp_path, data, index, params, metric):
    pytest.importorskip("faiss")
    X, Q = data
    y = np.arange(X.shape[0]) % 4
    clf = fastcls.KNearestNeighbor(k=5, backend="faiss", metric=metric, index=index, **params)
    clf.fit(X, y)
    path = tmp_path / "faiss.npz"
    clf.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["classes.npy", "faiss_index.npy", "metadata.npy", "y.npy"]
    loaded = fastcls.load(path)
    assert loaded.get_params() == clf.get_params()
    _assert_identical(clf, loaded, Q)
    clf.save(path, include_data=True)  # index and rows both stored: they must agree
    _assert_identical(clf, fastcls.load(path), Q)


def test_faiss_families_fastcls_cannot_walk_need_trust(tmp_path, data):
    pytest.importorskip("faiss")
    X, Q = data
    clf = fastcls.KNearestNeighbor(k=3, backend="faiss", index="SQ8").fit(X, np.arange(300) % 2)
    clf.save(tmp_path / "sq.npz")
    with pytest.raises(fastcls.ModelFileError, match="trust_index=True") as info:
        fastcls.load(tmp_path / "sq.npz")
    assert info.value.field == "faiss_index"
    _assert_identical(clf, fastcls.load(tmp_path / "sq.npz", trust_index=True), Q)


def test_memmap_fitted_model_round_trips(tmp_path, data):
    X, Q = data
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(ro, np.arange(300) % 5)
    _assert_identical(clf, _roundtrip(clf, tmp_path / "m.npz"), Q)


def test_metadata_is_json_with_a_version_and_digest(tmp_path, data):
    X, _ = data
    path = tmp_path / "m.npz"
    fastcls.KNearestNeighbor(k=2).fit(X, np.arange(300) % 2).save(path)
    meta = fio.read_metadata(path)
    assert meta["format"] == "fastcls-model"
    assert meta["format_version"] == fio.FORMAT_VERSION == 3
    assert meta["class"] == "KNearestNeighbor"
    assert meta["params"]["k"] == 2
    assert meta["backend"] == "numba"
    assert meta["digest"].startswith("sha256:")
    with np.load(path, allow_pickle=False) as npz:  # still a plain .npz for numpy
        assert sorted(npz.files) == ["classes", "fit_X", "metadata", "y"]
        np.testing.assert_array_equal(npz["fit_X"], X)


# --------------------------------------------------------------------------- paths
@pytest.mark.parametrize("name", ["model", "model.npz", "model.bin", "dotted.name.v2"])
def test_save_writes_exactly_the_path_it_is_given(tmp_path, data, name):
    X, Q = data
    clf = fastcls.KNearestNeighbor().fit(X, np.arange(300) % 3)
    for path in (tmp_path / name, str(tmp_path / name)):
        clf.save(path)
        assert sorted(os.listdir(tmp_path)) == [name]  # no suffix, no temporary left
        _assert_identical(clf, fastcls.load(path), Q)


def test_a_file_saved_by_fastcls_0_1_without_suffix_is_pointed_to(tmp_path, data):
    X, _ = data
    fastcls.KNearestNeighbor().fit(X, np.arange(300) % 3).save(tmp_path / "m.npz")
    with pytest.raises(FileNotFoundError, match=r"m\.npz exists"):
        fastcls.load(tmp_path / "m")


def test_save_keeps_the_permissions_of_the_file_it_replaces(tmp_path, data):
    X, _ = data
    path = tmp_path / "m.npz"
    clf = fastcls.KNearestNeighbor().fit(X, np.arange(300) % 3)
    clf.save(path)
    os.chmod(path, 0o640)
    clf.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_save_through_a_symlink_replaces_its_target(tmp_path, data):
    X, Q = data
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.npz"
    link = tmp_path / "latest.npz"
    first = fastcls.KNearestNeighbor(k=1).fit(X, np.arange(300) % 2)
    first.save(target)
    link.symlink_to(target)
    second = fastcls.KNearestNeighbor(k=3).fit(X, np.arange(300) % 3)
    second.save(link)
    assert link.is_symlink()
    _assert_identical(second, fastcls.load(target), Q)
    assert sorted(os.listdir(tmp_path / "store")) == ["real.npz"]


# --------------------------------------------------------------------------- atomic save
def test_a_failing_save_leaves_the_previous_file_and_no_temporary(tmp_path, data, monkeypatch):
    X, Q = data
    path = tmp_path / "m.npz"
    good = fastcls.KNearestNeighbor(k=3).fit(X, np.arange(300) % 3)
    good.save(path)
    before = path.read_bytes()

    real_write = os.fdopen

    def fdopen_failing_midway(fd, *args, **kwargs):
        f = real_write(fd, *args, **kwargs)
        written = [0]
        inner = f.write

        def write(b):
            written[0] += len(b)
            if written[0] > 2000:
                raise OSError(28, "No space left on device")
            return inner(b)

        f.write = write
        return f

    monkeypatch.setattr(fio.os, "fdopen", fdopen_failing_midway)
    other = fastcls.KNearestNeighbor(k=1).fit(X[::-1], np.arange(300) % 2)
    with pytest.raises(OSError, match="No space"):
        other.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
    _assert_identical(good, fastcls.load(path), Q)


def test_a_save_killed_halfway_leaves_the_previous_file_intact(tmp_path):
    """A process SIGKILLed in the middle of writing a big model: the old model survives."""
    path = tmp_path / "m.npz"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np, fastcls
        from fastcls import io as fio
        path = {str(path)!r}
        X = np.arange(4000 * 64, dtype=np.float64).reshape(4000, 64)
        fastcls.KNearestNeighbor(k=3).fit(X, np.arange(4000) % 3).save(path)
        print("saved", flush=True)
        real = os.fdopen
        def fdopen(fd, *a, **k):
            f = real(fd, *a, **k)
            inner, seen = f.write, [0]
            def write(b):
                seen[0] += len(b)
                if seen[0] > 1_000_000:  # about half of the 2 MB archive
                    inner(b)
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return inner(b)
            f.write = write
            return f
        fio.os.fdopen = fdopen
        fastcls.KNearestNeighbor(k=1).fit(X[::-1] + 1, np.arange(4000) % 2).save(path)
        print("not reached", flush=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["saved"]
    model = fastcls.load(path)
    assert model.k == 3 and model.n_samples_fit_ == 4000
    leftovers = [n for n in os.listdir(tmp_path) if n != "m.npz"]
    assert all(n.startswith(".m.npz.") and n.endswith(".tmp") for n in leftovers), leftovers


# --------------------------------------------------------------------------- bad files
def test_files_that_are_not_models_say_so(tmp_path):
    cases = {
        "text.npz": lambda p: p.write_text("just some text\n"),
        "empty.npz": lambda p: p.write_bytes(b""),
        "bare.npy": lambda p: np.save(p, np.zeros(3)),
        "pickle.npz": lambda p: p.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N."),
        "plain.npz": lambda p: np.savez(p, a=np.zeros(3)),
    }
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(fastcls.ModelFileError, match="not a fastcls model file") as info:
            fastcls.load(path)
        assert str(path) in str(info.value)
        assert "allow_pickle" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        fastcls.load(tmp_path / "missing.npz")


def test_model_file_error_is_a_value_error_with_path_and_field(tmp_path):
    assert issubclass(fastcls.ModelFileError, ValueError)
    err = fastcls.ModelFileError(tmp_path / "m.npz", "y", "codes out of range")
    assert err.path == str(tmp_path / "m.npz") and err.field == "y"
    assert str(err) == f"{tmp_path / 'm.npz'} (field 'y'): codes out of range"


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
    with pytest.raises(fastcls.ModelFileError):
        fastcls.load(obj_meta)
    assert "FASTCLS_TEST_PWNED" not in os.environ


def test_save_needs_a_fitted_model(tmp_path):
    with pytest.raises(fastcls.NotFittedError):
        fastcls.KNearestNeighbor().save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="save supports"):
        fio.save(object(), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """A member that inflates far beyond the file is refused from its declared size,
    before it is opened (checked directly: a wall-clock bound alone is flaky on a shared
    host)."""
    path = tmp_path / "bomb.npz"
    big = 320 * 2**20  # zeros: deflate shrinks them ~1000x
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
    header["shape"] = (big,)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("metadata.npy", "w") as m:
            np.lib.format.write_array(m, np.array(json.dumps({"format": "fastcls-model"})))
        with zf.open("fit_X.npy", "w") as m:
            np.lib.format.write_array_header_1_0(m, header)
            chunk = bytes(2**24)
            for _ in range(big // len(chunk)):
                m.write(chunk)
    assert path.stat().st_size < 4 * 2**20
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    start = time.perf_counter()
    with pytest.raises(fastcls.ModelFileError, match="max_bytes"):
        fastcls.load(path)
    assert "fit_X.npy" not in opened  # refused from the declared size, nothing inflated
    assert time.perf_counter() - start < 10.0  # a ceiling: inflating it all takes seconds
    with pytest.raises(fastcls.ModelFileError, match="max_bytes"):
        fio.read_metadata(path)


def _central_record(raw, name):
    """Offset of the central-directory record of member ``name``."""
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        if raw[pos + 46 : pos + 46 + len(name)] == name.encode():
            return pos
        pos = raw.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(name)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_a_member_that_lies_about_its_size_is_refused(tmp_path, data, factor):
    """The declared size disagrees with the stream: zipfile stops at the declared size
    or runs out of stream, and the .npy size check or the CRC refuses it."""
    X, _ = data
    path = tmp_path / "m.npz"
    fastcls.KNearestNeighbor().fit(X, np.arange(300) % 3).save(path, compress=True)
    raw = bytearray(path.read_bytes())
    record = _central_record(raw, "fit_X.npy")
    size = int.from_bytes(raw[record + 24 : record + 28], "little")
    raw[record + 24 : record + 28] = int(size * factor).to_bytes(4, "little")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(fastcls.ModelFileError) as info:
        fastcls.load(bad)
    assert info.value.field == "fit_X"


# --------------------------------------------------------------------------- tampering
def _read(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays.pop("metadata")[()]))
    return meta, arrays


def _write(path, meta, arrays, *, reseal=True):
    """Write a model file from parts, with a recomputed digest unless ``reseal=False``."""
    meta = dict(meta, arrays=sorted(arrays))
    if reseal:
        meta["digest"] = fio.content_digest(meta, arrays)
    np.savez(path, metadata=np.array(json.dumps(meta)), **arrays)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, data):
    X, _ = data
    folder = tmp_path_factory.mktemp("saved")
    models = {
        "knn": fastcls.KNearestNeighbor(k=3).fit(X, np.array(["a", "b", "c"])[np.arange(300) % 3]),
        "svm": fastcls.LinearSVM(n_iters=5, seed=0).fit(X, np.arange(300) % 4),
        "scaler": fastcls.FeatureScaler().fit(X),
        "svm-bytes": fastcls.LinearSVM(n_iters=2).fit(
            X, np.array([b"a", b"b"])[np.arange(300) % 2]
        ),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = folder / f"{name}.npz"
        model.save(paths[name])
    return paths


def test_an_edit_without_a_new_digest_is_refused(tmp_path, saved):
    meta, arrays = _read(saved["knn"])
    meta["params"]["k"] = 5  # a valid model, but not the one saved
    _write(tmp_path / "edited.npz", meta, arrays, reseal=False)
    with pytest.raises(fastcls.ModelFileError, match="digest") as info:
        fastcls.load(tmp_path / "edited.npz")
    assert info.value.field == "digest"


def _set(d, dotted, value):
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


# (model, metadata edits, array edits, field the error must name)
TAMPERED = [
    # k-NN: the widths and codes the kernels index with
    ("knn", {"state.n_features_in_": 25}, {}, "fit_X"),
    ("knn", {"state.n_samples_fit_": 301}, {}, "y"),
    ("knn", {}, {"y": lambda a: np.where(np.arange(a.size) == 7, 3, a)}, "y"),
    ("knn", {}, {"y": lambda a: np.where(np.arange(a.size) == 7, -1, a)}, "y"),
    ("knn", {}, {"y": lambda a: a.astype(np.float64)}, "y"),
    ("knn", {}, {"y": lambda a: a[:-1]}, "y"),
    ("knn", {"params.k": 301}, {}, "params.k"),
    ("knn", {"params.k": 0}, {}, "params.k"),
    ("knn", {"params.k": "3"}, {}, "params.k"),
    ("knn", {"params.metric": "cosine"}, {}, "params.metric"),
    ("knn", {"params.weights": "inverse"}, {}, "params.weights"),
    ("knn", {"params.backend": "gpu"}, {}, "params.backend"),
    ("knn", {"params.n_jobs": -7}, {}, "params.n_jobs"),
    ("knn", {"params.unknown": 1}, {}, "params"),
    ("knn", {"params.k": [3]}, {}, "params"),
    ("knn", {}, {"fit_X": lambda a: a.astype(np.float64) * np.nan}, "fit_X"),
    ("knn", {}, {"fit_X": lambda a: a.astype(np.float64) * 1e300}, "fit_X"),
    ("knn", {}, {"fit_X": lambda a: a.astype(np.int16)}, "fit_X"),
    ("knn", {}, {"fit_X": lambda a: a[:, :-1]}, "fit_X"),
    ("knn", {}, {"fit_X": lambda a: a.reshape(-1)}, "fit_X"),
    ("knn", {}, {"classes": lambda a: a[::-1]}, "classes"),
    ("knn", {}, {"classes": lambda a: np.array(["a", "a", "c"])}, "classes"),
    ("knn", {}, {"classes": lambda a: np.array(["a", "b", "c", "d"])}, "classes"),
    ("knn", {}, {"classes": lambda a: a.reshape(1, -1)}, "classes"),
    ("knn", {"state.labels_kind": "pickle"}, {}, "labels_kind"),
    ("knn", {"state.labels_dtype": "<i8"}, {}, "classes"),
    ("knn", {"state.labels_dtype": "O"}, {}, "classes"),
    ("knn", {"state.labels_dtype": [1]}, {}, "labels_dtype"),
    ("svm-bytes", {"state.labels_dtype": "|S999999999"}, {}, "labels_dtype"),
    ("svm-bytes", {"state.labels_dtype": "<U2"}, {}, "labels_dtype"),
    ("svm-bytes", {}, {"classes": lambda a: np.array(["a\u0100", "b"])}, "labels_dtype"),
    ("knn", {"state.backend_arrays": ["fit_X", "fit_X"]}, {}, "backend_arrays"),
    ("knn", {"state.backend_arrays": "fit_X"}, {}, "backend_arrays"),
    ("knn", {"state.backend_arrays": []}, {}, "fit_X"),
    ("knn", {"state.n_samples_fit_": True}, {}, "n_samples_fit_"),
    ("knn", {"state.n_features_in_": 2.5}, {}, "n_features_in_"),
    ("knn", {"class": "Pipeline"}, {}, "class"),
    ("knn", {"format_version": 4}, {}, "format_version"),
    ("knn", {"params": []}, {}, "params"),
    ("knn", {"state": None}, {}, "state"),
    ("knn", {"arrays": ["classes", "y"]}, {}, "fit_X"),
    # linear: W against the classes and features, finite weights
    ("svm", {"state.n_features_in": 23}, {}, "W"),
    ("svm", {}, {"W": lambda a: a[:, :3]}, "W"),
    ("svm", {}, {"W": lambda a: np.where(a == a.flat[0], np.inf, a)}, "W"),
    ("svm", {}, {"b": lambda a: a.astype(np.float64)}, "b"),
    ("svm", {}, {"classes": lambda a: a[:1]}, "classes"),
    ("svm", {}, {"classes": lambda a: a[:3]}, "W"),
    ("svm", {"state.loss": "softmax"}, {}, "loss"),
    ("svm", {"state.learning_rate": -1}, {}, "learning_rate"),
    ("svm", {"params.n_iters": "many"}, {}, "params.params"),
    ("svm", {"params.seed": {"numpy_generator": {"bit_generator": "MT19937"}}}, {}, "params"),
    # scaler
    ("scaler", {}, {"scale": lambda a: a * 0}, "scale"),
    ("scaler", {}, {"mean": lambda a: a[:-1]}, "mean"),
    ("scaler", {"params.with_mean": "yes"}, {}, "params.with_mean"),
]


@pytest.mark.parametrize(("model", "meta_edits", "array_edits", "field"), TAMPERED)
def test_a_tampered_file_is_refused_naming_the_field(
    tmp_path, saved, model, meta_edits, array_edits, field
):
    meta, arrays = _read(saved[model])
    for dotted, value in meta_edits.items():
        _set(meta, dotted, value)
    for name, edit in array_edits.items():
        arrays[name] = edit(arrays[name])
    if "arrays" in meta_edits:  # names not listed but present: drop them too
        arrays = {k: v for k, v in arrays.items() if k in meta_edits["arrays"]}
    path = tmp_path / "tampered.npz"
    _write(path, meta, arrays)
    if "arrays" in meta_edits:
        meta["arrays"] = meta_edits["arrays"]
    with pytest.raises(fastcls.ModelFileError) as info:
        fastcls.load(path)
    assert info.value.field == field, str(info.value)
    assert str(path) in str(info.value)


FAISS_TAMPERED = [
    # (edit of the serialised bytes, what the message says)
    (lambda b: b[:-4], "truncated"),  # truncated vectors
    (lambda b: np.concatenate([b, np.zeros(8, np.uint8)]), "bytes"),  # trailing bytes
    (lambda b: _poke(b, 4, "<i", 25), "dimension"),  # d
    (lambda b: _poke(b, 8, "<q", 10**6), "vectors"),  # ntotal
    (lambda b: _poke(b, 33, "<i", 0), "metric_type"),  # inner product instead of L2
    (lambda b: _poke(b, 32, "<B", 0), "is_trained"),
    (lambda b: _poke(b, 37, "<Q", 2**60), "values"),  # vector length
    (lambda b: _poke(b, 45, "<f", np.nan), "NaN"),
    (lambda b: _poke(b, 0, "4s", b"IxPq"), "index"),
]


def _poke(b, pos, fmt, value):
    import struct

    out = b.copy()
    out[pos : pos + struct.calcsize(fmt)] = np.frombuffer(struct.pack(fmt, value), np.uint8)
    return out


@pytest.mark.parametrize(("edit", "match"), FAISS_TAMPERED)
def test_a_tampered_faiss_index_is_refused_before_faiss_reads_it(tmp_path, data, edit, match):
    pytest.importorskip("faiss")
    X, _ = data
    clf = fastcls.KNearestNeighbor(k=3, backend="faiss").fit(X, np.arange(300) % 3)
    clf.save(tmp_path / "f.npz")
    meta, arrays = _read(tmp_path / "f.npz")
    arrays["faiss_index"] = edit(arrays["faiss_index"])
    _write(tmp_path / "t.npz", meta, arrays)
    with pytest.raises(fastcls.ModelFileError, match=match) as info:
        fastcls.load(tmp_path / "t.npz")
    assert info.value.field == "faiss_index"


@pytest.mark.parametrize("index", ["IVF4,Flat", "HNSW8"])
def test_a_tampered_approximate_index_is_refused(tmp_path, data, index):
    pytest.importorskip("faiss")
    X, _ = data
    clf = fastcls.KNearestNeighbor(k=3, backend="faiss", index=index).fit(X, np.arange(300) % 3)
    clf.save(tmp_path / "f.npz")
    meta, arrays = _read(tmp_path / "f.npz")
    blob = arrays["faiss_index"]
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(200):  # flips in sizes, ids, links and levels; floats may stay valid
        bad = blob.copy()
        bad[rng.integers(0, 600 if index == "HNSW8" else blob.size)] ^= np.uint8(
            1 << rng.integers(0, 8)
        )
        arrays["faiss_index"] = bad
        _write(tmp_path / "t.npz", meta, arrays)
        try:
            fastcls.load(tmp_path / "t.npz").predict(X[:3])
        except fastcls.ModelFileError as exc:
            assert exc.field == "faiss_index"
            refused += 1
    assert refused >= 5  # and nothing crashed or hung


def test_version_2_and_1_files_still_load(tmp_path, saved, data):
    _, Q = data
    original = fastcls.load(saved["knn"])
    meta, arrays = _read(saved["knn"])
    meta["format_version"] = 2
    del meta["digest"]
    _write(tmp_path / "v2.npz", meta, arrays, reseal=False)
    _assert_identical(original, fastcls.load(tmp_path / "v2.npz"), Q)
    v1 = {
        "format": "fastcls-model",
        "format_version": 1,
        "class": "KNearestNeighbor",
        "params": meta["params"],
        "n_features_in_": meta["state"]["n_features_in_"],
        "n_samples_fit_": meta["state"]["n_samples_fit_"],
        "backend": "numba",
    }
    np.savez(tmp_path / "v1.npz", metadata=np.array(json.dumps(v1)), **arrays)
    _assert_identical(original, fastcls.load(tmp_path / "v1.npz"), Q)


def test_an_archive_of_many_members_is_refused_from_its_end_record(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(1000):
            zf.writestr(f"a{i}.npy", b"")
    with pytest.raises(fastcls.ModelFileError, match="1000 archive members"):
        fastcls.load(path)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_archive_level_defects_are_model_file_errors(tmp_path, saved):
    meta, arrays = _read(saved["knn"])
    path = tmp_path / "x.npz"
    # a member numpy would unpickle, an unknown member, a repeated member, bad JSON
    np.savez(path, metadata=np.array(json.dumps(meta)), junk=np.zeros(2), **arrays)
    with pytest.raises(fastcls.ModelFileError, match="junk"):
        fastcls.load(path)
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("metadata", "metadata"):
            with zf.open(f"{name}.npy", "w") as m:
                np.lib.format.write_array(m, np.array(json.dumps(meta)))
    with pytest.raises(fastcls.ModelFileError, match="repeated"):
        fastcls.load(path)
    for text in ("{", "[" * 100_000, '{"format": NaN}', "null"):
        np.savez(path, metadata=np.array(text))
        with pytest.raises(fastcls.ModelFileError):
            fastcls.load(path)
    np.savez(path, metadata=np.array([json.dumps(meta)]))
    with pytest.raises(fastcls.ModelFileError, match="0-d"):
        fastcls.load(path)


@pytest.mark.parametrize(
    "make",
    [lambda: fastcls.KNearestNeighbor(k=3), lambda: fastcls.LinearSVM(n_iters=5)],
    ids=["knn", "svm"],
)
def test_saved_model_keeps_the_query_checks(tmp_path, make):
    """The range warning and the one-image rule survive save/load, and a tampered
    profile is refused like any other field."""
    import warnings

    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    est = make().fit(imgs, np.arange(30) % 3)
    path = tmp_path / "m.npz"
    est.save(path)
    loaded = fastcls.load(path)
    with pytest.warns(fastcls.DataRangeWarning):
        loaded.predict(imgs[:4] / 255.0)
    with pytest.raises(ValueError, match=r"pass X\[None\]"):
        loaded.predict(imgs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastcls.DataRangeWarning)
        np.testing.assert_array_equal(loaded.predict(imgs), est.predict(imgs))

    arrays, meta = est.get_fitted_state()
    for field, bad in [("fit_image_shape", [4, 4, 4]), ("fit_value_range", [5.0, 1.0])]:
        with pytest.raises(ValueError, match=field):
            make().set_fitted_state(fastcls.base.FittedState(arrays, {**meta, field: bad}))
    old_style = {k: v for k, v in meta.items() if not k.startswith("fit_")}
    restored = make().set_fitted_state(fastcls.base.FittedState(arrays, old_style))
    np.testing.assert_array_equal(restored.predict(imgs), est.predict(imgs))
