"""Tests for fastcls.datasets: the embedded default dataset and CIFAR-10 loading."""

from __future__ import annotations

import gzip
import importlib.resources
import io
import os
import pickle
import pickletools
import sys
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from py2_pickle import py2_dumps

from fastcls import _config, datasets
from fastcls.datasets import cifar10


# --------------------------------------------------------------------------- load_default
def _digits_truth() -> tuple[np.ndarray, np.ndarray]:
    """Parse the embedded CSV independently of the loader (plain text split)."""
    path = importlib.resources.files("fastcls") / "data" / "digits.csv.gz"
    with path.open("rb") as raw:
        text = gzip.decompress(raw.read()).decode("ascii")
    rows = [[int(v) for v in line.split(",")] for line in text.splitlines() if line.strip()]
    table = np.array(rows)
    return table[:, :64].reshape(-1, 8, 8), table[:, 64]


def test_load_default_shapes_dtypes_and_values():
    ds = datasets.load_default()
    assert isinstance(ds, datasets.Dataset)
    assert ds.images.shape == (1797, 8, 8)
    assert ds.images.dtype == np.uint8
    assert ds.labels.shape == (1797,)
    assert ds.labels.dtype == np.int64
    assert ds.images.min() == 0 and ds.images.max() == 16  # the data's own range, kept
    assert ds.target_names == tuple("0123456789")
    assert set(np.unique(ds.labels)) == set(range(10))
    # every class is well represented (the UCI test set has 174..183 per class)
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.min() >= 170 and counts.sum() == 1797
    assert "Alpaydin" in ds.description and "CC BY 4.0" in ds.description
    assert len(ds) == ds.n_samples == 1797
    assert ds.images.flags.c_contiguous and ds.labels.flags.c_contiguous


def test_load_default_matches_independent_parse():
    images, labels = _digits_truth()
    ds = datasets.load_default()
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    # the first image of the UCI test set is a zero
    assert ds.labels[0] == 0 and ds.labels[1] == 1


def test_load_default_flattened_views():
    ds = datasets.load_default()
    X, y = ds.as_arrays()
    assert X.shape == (1797, 64) and X.dtype == np.uint8
    assert y is ds.labels and ds.y is ds.labels
    np.testing.assert_array_equal(X[5], ds.images[5].ravel())
    np.testing.assert_array_equal(ds.X, X)
    assert np.shares_memory(X, ds.images)  # a view, no copy
    assert "1797" in repr(ds)


def test_load_default_returns_copies_that_cannot_corrupt_the_cache():
    a = datasets.load_default()
    a.images[:] = 255
    a.labels[:] = -1
    b = datasets.load_default()
    assert b.images.max() == 16 and b.labels.min() == 0
    assert not np.shares_memory(a.images, b.images)
    assert b.images.flags.writeable and b.labels.flags.writeable


def test_import_datasets_needs_no_sklearn_and_compiles_nothing():
    import subprocess

    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"  # any import of scikit-learn would fail
        "import fastcls.datasets as d\n"
        "ds = d.load_default()\n"
        "assert ds.images.shape == (1797, 8, 8)\n"
        "assert 'numba' not in sys.modules, 'datasets must not import numba'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- CIFAR-10 helpers
TRAIN_SIZES = (3, 2, 4, 1, 2)  # five training batches of different sizes (12 images)
N_TEST = 3


def _reference_hwc(rows: np.ndarray) -> np.ndarray:
    """The format's definition: pixel (r, col) of channel c is row[c*1024 + r*32 + col]."""
    out = np.zeros((rows.shape[0], 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        for r in range(32):
            for col in range(32):
                out[:, r, col, c] = rows[:, c * 1024 + r * 32 + col]
    return out


def _make_batches(seed: int = 0):
    """Random channels-first rows and labels for the 5 training batches and the test batch."""
    rng = np.random.default_rng(seed)
    train = [
        (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n))
        for n in TRAIN_SIZES
    ]
    # make the extremes and every label appear
    train[0][0][0, :] = 0
    train[0][0][1, :] = 255
    train[0][1][:] = [0, 9, 5]
    test = (rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), rng.integers(0, 10, N_TEST))
    return train, test


def _expected(train, test, n_train=None, n_test=None):
    rows = np.concatenate([d for d, _ in train])[:n_train]
    labels = np.concatenate([y for _, y in train])[:n_train]
    return (
        _reference_hwc(rows),
        labels.astype(np.int64),
        _reference_hwc(test[0][:n_test]),
        test[1][:n_test].astype(np.int64),
    )


def _write_binary(folder, train, test, meta=True):
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, (rows, labels) in zip(names, [*train, test], strict=True):
        rec = np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1)
        rec.tofile(folder / name)
    if meta:
        (folder / "batches.meta.txt").write_text("\n".join(datasets.CIFAR10_CLASSES) + "\n\n")
    return folder


def _dumps(obj, style) -> bytes:
    if style == "py2":
        return py2_dumps(obj)
    return pickle.dumps(obj, protocol=style)


def _write_python(folder, train, test, style="py2", meta=True):
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, (name, (rows, labels)) in enumerate(zip(names, [*train, test], strict=True)):
        batch = {
            b"batch_label": f"training batch {i + 1} of 5".encode(),
            b"labels": [int(v) for v in labels],
            b"data": rows,
            b"filenames": [f"img_{j}.png".encode() for j in range(len(labels))],
        }
        (folder / name).write_bytes(_dumps(batch, style))
    if meta:
        names_b = [n.encode() for n in datasets.CIFAR10_CLASSES]
        meta_obj = {b"num_cases_per_batch": 10000, b"label_names": names_b, b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(_dumps(meta_obj, style))
    return folder


def _tar(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def _assert_loaded(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype
        assert g.flags.c_contiguous
        np.testing.assert_array_equal(g, e)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """Both formats, extracted and archived, in one tree; and what they must load as."""
    root = tmp_path_factory.mktemp("cifar")
    train, test = _make_batches()
    bin_dir = _write_binary(root / "both" / "cifar-10-batches-bin", train, test)
    py_dir = _write_python(root / "both" / "cifar-10-batches-py", train, test)
    archives = root / "archives"
    archives.mkdir()
    _tar(bin_dir, archives / "cifar-10-binary.tar.gz")
    _tar(py_dir, archives / "cifar-10-python.tar.gz")
    return {
        "root": root,
        "train": train,
        "test": test,
        "bin_dir": bin_dir,
        "py_dir": py_dir,
        "archives": archives,
        "expected": _expected(train, test),
    }


# --------------------------------------------------------------------------- CIFAR-10 loading
def test_reference_conversion_is_the_documented_layout():
    rows = np.zeros((1, 3072), dtype=np.uint8)
    rows[0, 0] = 10  # red, top-left
    rows[0, 1024 + 31] = 20  # green, top-right
    rows[0, 2048 + 32 * 31] = 30  # blue, bottom-left
    img = _reference_hwc(rows)[0]
    assert img[0, 0, 0] == 10 and img[0, 31, 1] == 20 and img[31, 0, 2] == 30
    assert img.sum() == 60


@pytest.mark.parametrize("chunk", [1, 3, 256, 1000])
def test_channel_transpose_is_independent_of_chunk_size(chunk):
    rows = np.random.default_rng(7).integers(0, 256, (300, 3073), dtype=np.uint8)[:, 1:]
    out = np.empty((300, 32, 32, 3), dtype=np.uint8)
    cifar10._to_hwc(rows, out, chunk=chunk)
    np.testing.assert_array_equal(out, _reference_hwc(rows))


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_batches_larger_than_one_chunk(tmp_path, fmt):
    rng = np.random.default_rng(11)
    train = [
        (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n))
        for n in (300, 1, 257, 2, 1)
    ]
    test = (rng.integers(0, 256, (260, 3072), dtype=np.uint8), rng.integers(0, 10, 260))
    writer = _write_binary if fmt == "binary" else _write_python
    folder = writer(tmp_path / "d", train, test)
    _assert_loaded(datasets.load_cifar10(folder), _expected(train, test))


@pytest.mark.parametrize("fmt", ["binary", "python"])
@pytest.mark.parametrize("where", ["batch_folder", "parent", "archive", "archive_parent"])
def test_load_cifar10_formats_and_locations(cifar, fmt, where):
    folder = cifar["bin_dir"] if fmt == "binary" else cifar["py_dir"]
    archive_name = "cifar-10-binary.tar.gz" if fmt == "binary" else "cifar-10-python.tar.gz"
    root = {
        "batch_folder": folder,
        "parent": folder.parent,
        "archive": cifar["archives"] / archive_name,
        "archive_parent": cifar["archives"],
    }[where]
    got = datasets.load_cifar10(root, format=fmt)
    _assert_loaded(got, cifar["expected"])
    assert got[0].shape == (sum(TRAIN_SIZES), 32, 32, 3)
    assert got[2].shape == (N_TEST, 32, 32, 3)
    # auto-detection on the batch folder / archive finds the same data
    if where in ("batch_folder", "archive"):
        _assert_loaded(datasets.load_cifar10(str(root)), cifar["expected"])


def test_auto_prefers_binary_when_both_present(cifar, monkeypatch):
    calls = []
    original = cifar10._READERS.copy()
    for name, fn in original.items():
        monkeypatch.setitem(
            cifar10._READERS, name, lambda *a, _n=name, _f=fn: calls.append(_n) or _f(*a)
        )
    _assert_loaded(datasets.load_cifar10(cifar["bin_dir"].parent), cifar["expected"])
    assert set(calls) == {"binary"}
    calls.clear()
    _assert_loaded(
        datasets.load_cifar10(cifar["bin_dir"].parent, format="python"), cifar["expected"]
    )
    assert set(calls) == {"python"}


@pytest.mark.parametrize("style", ["py2", 0, 1, 2, 3, 4, 5])
def test_python_batches_of_every_pickle_protocol(tmp_path, style):
    train, test = _make_batches(seed=3)
    folder = _write_python(tmp_path / "cifar-10-batches-py", train, test, style=style)
    _assert_loaded(datasets.load_cifar10(folder), _expected(train, test))


def test_py2_stream_really_is_python2_shaped():
    blob = _dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]}, "py2")
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert "SHORT_BINSTRING" in ops and "BINSTRING" in ops
    assert not ops & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    assert b"numpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob


def test_python_batch_with_str_keys_and_ndarray_labels(tmp_path):
    rows = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072) % 256  # int64 pixels 0..255
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": rows, "labels": np.array([3, 4])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    X, y, Xt, yt = datasets.load_cifar10(tmp_path, format="python")
    assert X.shape == (10, 32, 32, 3) and X.dtype == np.uint8
    np.testing.assert_array_equal(X[:2], _reference_hwc(rows.astype(np.uint8)))
    np.testing.assert_array_equal(y, [3, 4] * 5)


@pytest.mark.parametrize("fmt", ["binary", "python"])
@pytest.mark.parametrize(("n_train", "n_test"), [(0, 0), (1, 1), (4, 2), (6, 3), (12, None)])
def test_n_train_n_test_take_the_first_images(cifar, fmt, n_train, n_test):
    got = datasets.load_cifar10(cifar["bin_dir"].parent, fmt, n_train=n_train, n_test=n_test)
    _assert_loaded(got, _expected(cifar["train"], cifar["test"], n_train, n_test))
    assert got[0].shape[0] == n_train


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_subset_reads_only_the_batches_it_needs(tmp_path, fmt):
    train, test = _make_batches()
    writer = _write_binary if fmt == "binary" else _write_python
    folder = writer(tmp_path / "d", train, test)
    ext = ".bin" if fmt == "binary" else ""
    for i in (3, 4, 5):
        (folder / f"data_batch_{i}{ext}").unlink()
    got = datasets.load_cifar10(folder, n_train=5)  # batches 1 and 2 hold 3 + 2 images
    _assert_loaded(got, _expected(train, test, n_train=5))
    with pytest.raises(FileNotFoundError, match=f"data_batch_3{ext}"):
        datasets.load_cifar10(folder, n_train=6)
    with pytest.raises(FileNotFoundError, match=f"data_batch_3{ext}.*data_batch_5{ext}"):
        datasets.load_cifar10(folder)


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_n_train_larger_than_available(cifar, fmt):
    with pytest.raises(ValueError, match="n_train=13 but the batches hold only 12 images"):
        datasets.load_cifar10(cifar["bin_dir"].parent, fmt, n_train=13)
    with pytest.raises(ValueError, match="n_test=4 but the batches hold only 3 images"):
        datasets.load_cifar10(cifar["bin_dir"].parent, fmt, n_test=4)


@settings(max_examples=15)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 3), min_size=6, max_size=6),
    fill=st.sampled_from(["random", "zeros", "max", "same"]),
)
def test_both_formats_match_the_reference_property(tmp_path_factory, data, sizes, fill):
    """Random and adversarial pixels (all 0, all 255, identical images) and labels 0..9."""
    root = tmp_path_factory.mktemp("prop")
    batches = []
    for n in sizes:
        if fill == "random":
            rows = data.draw(arrays(np.uint8, (n, 3072)))
        elif fill == "zeros":
            rows = np.zeros((n, 3072), np.uint8)
        elif fill == "max":
            rows = np.full((n, 3072), 255, np.uint8)
        else:
            rows = np.repeat(np.arange(3072, dtype=np.uint8)[None], n, axis=0)
        labels = np.array(data.draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)))
        batches.append((rows, labels))
    train, test = batches[:5], batches[5]
    expected = _expected(train, test)
    _assert_loaded(datasets.load_cifar10(_write_binary(root / "b", train, test)), expected)
    _assert_loaded(datasets.load_cifar10(_write_python(root / "p", train, test)), expected)


# --------------------------------------------------------------------------- safety
class _Exploit:
    """Pickles to a call of os.system(command) when unpickled."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _marker_command(marker):
    return f"{sys.executable} -c \"open(r'{marker}', 'w').write('pwned')\""


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned.txt"
    blob = pickle.dumps(_Exploit(_marker_command(marker)), protocol=protocol)
    # the payload is genuine: plain pickle would run it (checked in a subprocess below)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refused to load global '(os|posix)\.system'"
    ):
        datasets.RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    assert not marker.exists()


def test_malicious_payload_is_live_under_plain_pickle(tmp_path):
    """Guards the test above: the same bytes do run code with pickle.loads."""
    import subprocess

    marker = tmp_path / "pwned.txt"
    blob = pickle.dumps(_Exploit(_marker_command(marker)), protocol=2)
    code = f"import pickle; pickle.loads({blob!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert marker.read_text() == "pwned"


def test_malicious_batch_file_is_refused_by_load_cifar10(tmp_path):
    marker = tmp_path / "pwned.txt"
    train, test = _make_batches()
    folder = _write_python(tmp_path / "cifar-10-batches-py", train, test)
    # a batch dict whose 'labels' entry smuggles the exploit (as a real attack would)
    evil = {b"data": train[0][0], b"labels": _Exploit(_marker_command(marker))}
    (folder / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"data_batch_1: refused to load global"):
        datasets.load_cifar10(tmp_path)
    assert not marker.exists()
    # also a ValueError, like every other malformed file (callers catching that are covered)
    with pytest.raises(ValueError, match=r"data_batch_1: refused to load global") as info:
        datasets.load_cifar10(tmp_path)
    assert isinstance(info.value, datasets.UnsafePickleError)
    assert not marker.exists()
    # the same file inside an archive
    archive = _tar(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(pickle.UnpicklingError, match=r"tar\.gz!cifar-10-batches-py/data_batch_1"):
        datasets.load_cifar10(archive)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("collections", "OrderedDict"),  # harmless, but not part of the format
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("numpy.testing", "assert_"),
        ("copyreg", "_reconstructor"),
        ("fastcls_no_such_module_xyz", "anything"),
    ],
)
def test_disallowed_globals_are_refused_before_import(module, name):
    blob = f"c{module}\n{name}\n)R.".encode()  # GLOBAL, empty tuple, REDUCE
    with pytest.raises(pickle.UnpicklingError, match=f"refused to load global '{module}.{name}'"):
        datasets.RestrictedUnpickler(io.BytesIO(blob)).load()
    assert "fastcls_no_such_module_xyz" not in sys.modules


def test_ordered_dict_batch_is_refused(tmp_path):
    from collections import OrderedDict

    blob = pickle.dumps(OrderedDict(data=np.zeros((1, 3072), np.uint8), labels=[1]), 2)
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        datasets.RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()


def test_codecs_encode_is_latin1_only():
    ok = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00ab" + b"X\x06\x00\x00\x00latin1\x86R."
    assert datasets.RestrictedUnpickler(io.BytesIO(ok)).load() == b"ab"
    bad = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x0a\x00\x00\x00zlib_codec\x86R."
    with pytest.raises(pickle.UnpicklingError, match="only the latin-1"):
        datasets.RestrictedUnpickler(io.BytesIO(bad)).load()


def test_bytes_only_without_arguments():
    assert datasets.RestrictedUnpickler(io.BytesIO(pickle.dumps(b"", 2))).load() == b""
    bad = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R."  # bytes(2**30)
    with pytest.raises(pickle.UnpicklingError, match="only bytes\\(\\) is allowed"):
        datasets.RestrictedUnpickler(io.BytesIO(bad)).load()


def test_persistent_ids_are_refused():
    blob = b"\x80\x02X\x01\x00\x00\x00xQ."  # BINPERSID
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        datasets.RestrictedUnpickler(io.BytesIO(blob)).load()


def test_allowed_numpy_pickles_round_trip():
    # the format's dtypes only (float arrays are refused: tests/test_safe_pickle.py)
    for obj in (
        np.arange(7, dtype=np.uint8),
        np.int32(-2),
        np.int64(7),
        {b"k": [np.zeros((2, 2), np.int64), (1, "a", None, True, 1.5)]},
    ):
        for protocol in (2, 4, 5):
            got = datasets.RestrictedUnpickler(
                io.BytesIO(pickle.dumps(obj, protocol)), encoding="bytes"
            ).load()
            assert repr(got) == repr(obj)


def test_tar_members_are_never_extracted_and_traversal_names_are_ignored(tmp_path):
    train, test = _make_batches()
    folder = _write_binary(tmp_path / "src" / "cifar-10-batches-bin", train, test)
    archive = tmp_path / "work" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        evil = tarfile.TarInfo("../../escaped.txt")
        payload = b"should never be written"
        evil.size = len(payload)
        tar.addfile(evil, io.BytesIO(payload))
        link = tarfile.TarInfo("cifar-10-batches-bin/data_batch_9.bin")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        tar.add(folder, arcname="cifar-10-batches-bin")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    _assert_loaded(datasets.load_cifar10(archive), _expected(train, test))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_oversized_tar_member_is_refused(tmp_path, monkeypatch):
    train, test = _make_batches()
    folder = _write_binary(tmp_path / "cifar-10-batches-bin", train, test)
    archive = _tar(folder, tmp_path / "a.tar.gz")
    monkeypatch.setattr(_config.settings, "cifar_max_member_bytes", 1000)
    with pytest.raises(ValueError, match="declares .* bytes, far more than a CIFAR-10 batch"):
        datasets.load_cifar10(archive)


# --------------------------------------------------------------------------- malformed files
def test_truncated_binary_file_names_the_file(tmp_path):
    train, test = _make_batches()
    folder = _write_binary(tmp_path / "cifar-10-batches-bin", train, test)
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"data_batch_2\.bin has 6145 bytes.*multiple of 3073"):
        datasets.load_cifar10(folder)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"data_batch_2\.bin has 0 bytes"):
        datasets.load_cifar10(folder)


@pytest.mark.parametrize("bad_label", [10, 255])
def test_binary_label_out_of_range(tmp_path, bad_label):
    train, test = _make_batches()
    train[3][1][0] = bad_label
    folder = _write_binary(tmp_path / "cifar-10-batches-bin", train, test)
    with pytest.raises(ValueError, match=rf"data_batch_4\.bin holds label {bad_label}"):
        datasets.load_cifar10(folder)


@pytest.mark.parametrize("bad_label", [-1, 10])
def test_python_label_out_of_range(tmp_path, bad_label):
    train, test = _make_batches()
    test[1][1] = bad_label
    folder = _write_python(tmp_path / "cifar-10-batches-py", train, test)
    with pytest.raises(ValueError, match=rf"test_batch holds label {bad_label}"):
        datasets.load_cifar10(folder)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2, 3], "holds a list, expected a dict"),
        ({b"labels": [1]}, r"has no 'data' entry \(keys: \['labels'\]\)"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "has no 'labels' entry"),
        ({b"data": np.zeros((1, 3071), np.uint8), b"labels": [1]}, r"shape \(n, 3072\)"),
        ({b"data": np.zeros(3072, np.uint8), b"labels": [1]}, r"shape \(n, 3072\)"),
        ({b"data": [[0] * 3072], b"labels": [1]}, "got list"),
        ({b"data": np.zeros((1, 3072), np.float32), b"labels": [1]}, "uint8 pixels"),
        ({b"data": np.full((1, 3072), 256, np.int32), b"labels": [1]}, "uint8 pixels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "2 images but 1 labels"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1.0]}, "flat list of integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [True]}, "got booleans"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": 1}, "list of integers"),
        ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "holds no images"),
    ],
)
def test_malformed_python_batch(tmp_path, batch, message):
    train, test = _make_batches()
    folder = _write_python(tmp_path / "cifar-10-batches-py", train, test)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=message):
        datasets.load_cifar10(folder)


def test_truncated_pickle(tmp_path):
    train, test = _make_batches()
    folder = _write_python(tmp_path / "cifar-10-batches-py", train, test)
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"data_batch_1 is not a valid CIFAR-10 python batch"):
        datasets.load_cifar10(folder)


# --------------------------------------------------------------------------- missing / arguments
def test_missing_data_says_what_was_looked_for_and_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_cifar10(tmp_path)
    msg = str(info.value)
    for part in (
        "cifar-10-batches-bin",
        "cifar-10-batches-py",
        "data_batch_1.bin",
        "cifar-10-python.tar.gz",
        "www.cs.toronto.edu/~kriz/cifar.html",
    ):
        assert part in msg
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 data found"):
        datasets.load_cifar10(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="python batches") as info:
        datasets.load_cifar10(tmp_path, format="python")
    assert "binary" not in str(info.value).split("Download")[0]


def test_format_requested_but_only_the_other_present(cifar):
    with pytest.raises(FileNotFoundError, match="python batches"):
        datasets.load_cifar10(cifar["bin_dir"], format="python")
    with pytest.raises(FileNotFoundError, match="binary batches"):
        datasets.load_cifar10(cifar["archives"] / "cifar-10-python.tar.gz", format="binary")


def test_missing_test_batch(tmp_path):
    train, test = _make_batches()
    folder = _write_binary(tmp_path / "cifar-10-batches-bin", train, test)
    (folder / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_batch\.bin"):
        datasets.load_cifar10(folder)


def test_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="is a file but not a tar archive"):
        datasets.load_cifar10(path)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"root": 123}, TypeError, "root must be a path"),
        ({"root": None}, TypeError, "root must be a path"),
        ({"format": "png"}, ValueError, "format must be one of"),
        ({"format": None}, ValueError, "format must be one of"),
        ({"n_train": -1}, ValueError, "n_train must be >= 0"),
        ({"n_train": 1.5}, TypeError, "n_train must be an integer"),
        ({"n_test": True}, TypeError, "n_test must be an integer"),
    ],
)
def test_argument_validation(cifar, kwargs, error, message):
    args = {"root": cifar["bin_dir"], **kwargs}
    with pytest.raises(error, match=message):
        datasets.load_cifar10(**args)


# --------------------------------------------------------------------------- class names
def test_class_names(cifar, tmp_path):
    assert datasets.cifar10_class_names() == datasets.CIFAR10_CLASSES
    assert len(datasets.CIFAR10_CLASSES) == 10 and datasets.CIFAR10_CLASSES[9] == "truck"
    for root in (cifar["bin_dir"], cifar["py_dir"], cifar["archives"]):
        assert datasets.cifar10_class_names(root) == datasets.CIFAR10_CLASSES
    assert datasets.cifar10_class_names(cifar["py_dir"].parent, "python") == (
        datasets.CIFAR10_CLASSES
    )
    # names are read from the file, not just echoed
    train, test = _make_batches()
    folder = _write_binary(tmp_path / "cifar-10-batches-bin", train, test, meta=False)
    assert datasets.cifar10_class_names(folder) == datasets.CIFAR10_CLASSES  # fallback
    custom = [f"c{i}" for i in range(10)]
    (folder / "batches.meta.txt").write_text("\n".join(custom))
    assert datasets.cifar10_class_names(folder) == tuple(custom)
    (folder / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lists 2 class names"):
        datasets.cifar10_class_names(folder)
    py = _write_python(tmp_path / "cifar-10-batches-py", train, test, meta=False)
    (py / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x"] * 10}, protocol=2))
    assert datasets.cifar10_class_names(py) == ("x",) * 10
    (py / "batches.meta").write_bytes(pickle.dumps(_Exploit("true"), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="batches.meta: refused"):
        datasets.cifar10_class_names(py)
