"""Plots (optional extra: ``pip install fastcls[plots]``): a flat module of functions.

matplotlib is imported when a function is called, never at ``import fastcls``. Every
function draws on a given ``ax`` / ``fig`` or creates one, and returns it; none calls
``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fastcls.plots needs matplotlib: install the plots extra with "
            "`pip install fastcls[plots]` (or `pip install matplotlib`)"
        ) from exc
    return plt


def plot_loss_curve(
    loss_history: Any,
    ax: Any = None,
    *,
    smooth: int | None = None,
    log_scale: bool | None = None,
    label: str | None = None,
    title: str | None = "Training loss",
) -> Any:
    """Loss per iteration (e.g. ``clf.loss_history_``), optionally with a moving average.

    Parameters
    ----------
    loss_history : array-like of shape (n_iters,) or a fitted linear classifier
    ax : matplotlib Axes, optional
    smooth : int, optional
        Window of a moving average drawn over the raw curve (mini-batch losses are noisy);
        the raw curve is then drawn faint behind it.
    log_scale : bool or None, default None
        Logarithmic y axis. None: logarithmic when every loss is positive and the
        largest is more than 10 times the median of the second half (the first steps'
        loss, e.g. about 9 for an SVM on 10 classes, would otherwise squash the rest of
        the curve into a flat line).
    label, title : str, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import numpy as np, fastcls.plots
    >>> ax = fastcls.plots.plot_loss_curve(np.linspace(2.3, 0.5, 100), smooth=10)
    """
    plt = _pyplot()
    hist = getattr(loss_history, "loss_history_", loss_history)
    hist = np.asarray(hist, dtype=np.float64).ravel()
    if hist.size == 0:
        raise ValueError("loss_history is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    it = np.arange(1, hist.size + 1)
    raw_style = {"lw": 0.6, "alpha": 0.35} if smooth else {"lw": 0.9, "alpha": 1.0}
    ax.plot(it, hist, color="C0", label=label or "loss", **raw_style)
    if smooth:
        w = int(smooth)
        if w < 1:
            raise ValueError(f"smooth must be a positive integer, got {smooth!r}")
        if hist.size >= w:
            avg = np.convolve(hist, np.ones(w) / w, mode="valid")
            ax.plot(it[w - 1 :], avg, color="C1", lw=1.8, label=f"moving average ({w})")
        ax.legend()
    if log_scale is None:
        tail = hist[hist.size // 2 :]
        log_scale = bool(
            np.all(hist > 0) and np.isfinite(hist).all() and hist.max() > 10 * np.median(tail)
        )
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    return ax


def weight_templates(W: Any, image_shape: Sequence[int]) -> np.ndarray:
    """Columns of ``W`` (D, C) as images (C, *image_shape), each rescaled to 0..1.

    A last row holding a bias (``D == prod(image_shape) + 1``, the bias trick) is dropped.
    Each template is scaled on its own: ``(w - min) / (max - min)`` (0.5 when constant).
    """
    Wa = np.asarray(getattr(W, "W_", W), dtype=np.float64)
    if Wa.ndim != 2:
        raise ValueError(f"W must be 2-D (n_features, n_classes), got shape {Wa.shape}")
    shape = tuple(int(s) for s in image_shape)
    size = int(np.prod(shape))
    if Wa.shape[0] == size + 1:
        Wa = Wa[:-1]
    if Wa.shape[0] != size:
        raise ValueError(
            f"W has {Wa.shape[0]} rows but image_shape {shape} has {size} pixels "
            f"(or {size + 1} with a bias row)"
        )
    T = Wa.T.reshape((Wa.shape[1], *shape))
    lo = T.reshape(T.shape[0], -1).min(axis=1)
    hi = T.reshape(T.shape[0], -1).max(axis=1)
    span = hi - lo
    out = np.full(T.shape, 0.5)
    ok = span > 0
    bshape = (-1,) + (1,) * len(shape)
    out[ok] = (T[ok] - lo[ok].reshape(bshape)) / span[ok].reshape(bshape)
    return out


def plot_weight_templates(
    W: Any,
    image_shape: Sequence[int] = (32, 32, 3),
    class_names: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    fig: Any = None,
    cmap: str = "gray",
    title: str | None = None,
) -> Any:
    """The learned weights shown as one image template per class (as in the lectures).

    Parameters
    ----------
    W : array-like of shape (D, C), or a fitted linear classifier (its ``W_`` and
        ``classes_`` are used)
    image_shape : (H, W) or (H, W, 3), default (32, 32, 3)
        Shape of one image; ``D`` must be its size (or its size + 1 with a bias row).
    class_names : sequence of str, optional
        Titles; default the classifier's ``classes_`` or ``0..C-1``.
    ncols : int, optional
        Templates per row (default: all in one row up to 10).
    fig : matplotlib Figure, optional
    cmap : str
        Colour map for grey images.
    title : str, optional
        A figure title, placed above the class names (the figure's layout is
        constrained so that the two never overlap).

    Returns
    -------
    matplotlib Figure

    Examples
    --------
    >>> import numpy as np, fastcls.plots
    >>> fig = fastcls.plots.plot_weight_templates(np.random.rand(64, 3), (8, 8))
    """
    plt = _pyplot()
    T = weight_templates(W, image_shape)
    C = T.shape[0]
    if class_names is None:
        classes = getattr(W, "classes_", None)
        class_names = [str(c) for c in (classes if classes is not None else range(C))]
    if len(class_names) != C:
        raise ValueError(f"class_names has {len(class_names)} names but W has {C} classes")
    ncols = int(ncols) if ncols else min(C, 10)
    nrows = -(-C // ncols)
    if fig is None:
        fig = plt.figure(figsize=(1.3 * ncols, 1.5 * nrows + (0.35 if title else 0.0)))
    # constrained layout reserves room for the title above the panel titles; a figure
    # title placed by hand (fig.suptitle after the panels) is drawn over them
    fig.set_layout_engine("constrained")
    for k in range(C):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        img = T[k]
        ax.imshow(img if img.ndim == 3 else img, cmap=None if img.ndim == 3 else cmap)
        ax.set_title(str(class_names[k]), fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig
