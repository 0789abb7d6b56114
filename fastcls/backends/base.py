"""The interface every search backend implements.

A backend is built once per fitted model (or per :func:`fastcls.kneighbors` call) on
validated training rows, and may keep whatever it needs between searches: the rows
themselves, an index, a centred copy and norms, or shards scattered over workers.
"""

from __future__ import annotations

import abc
import contextvars
from typing import Any, ClassVar

import numpy as np

from fastcls.backends.rows import promote_query

__all__ = ["SearchBackend", "TRUST_INDEX_BYTES"]

#: True while :func:`fastcls.load` runs with ``trust_index=True``: a backend may then
#: hand serialised index bytes that it cannot check itself to its library's reader
TRUST_INDEX_BYTES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fastcls_trust_index_bytes", default=False
)


class SearchBackend(abc.ABC):
    """Exact or approximate k-nearest-neighbour search over fixed training rows.

    Subclasses set :attr:`name`, the keyword options they take at build
    (:attr:`build_options`) and at search (:attr:`search_options`), and implement
    :meth:`search_promoted`. They are registered by name in :mod:`fastcls.backends`.

    Parameters
    ----------
    X : ndarray, np.memmap or LazyRows (n_samples, n_features)
        Validated training rows (see :func:`fastcls.backends.rows.check_train_rows`).
    metric : {"l1", "l2", "sqeuclidean"}
        Validated metric.
    train_tile : int, optional
        Training rows per streamed tile, for backends that stream.
    **options
        Backend-specific build options (validated by the backend).
    """

    #: registry name (``backend=...``)
    name: ClassVar[str] = ""
    #: keyword options accepted when the backend is built
    build_options: ClassVar[tuple[str, ...]] = ()
    #: keyword options accepted by :meth:`search`
    search_options: ClassVar[tuple[str, ...]] = ()
    #: whether results are exact (equal to the NumPy reference)
    exact: bool = True

    def __init__(
        self, X: Any, metric: str, *, train_tile: int | None = None, **options: Any
    ) -> None:
        self.X = X
        self.metric = metric
        self.train_tile = train_tile
        self.n_samples = int(X.shape[0])
        self.n_features = int(X.shape[1])
        self.dtype = np.dtype(X.dtype)

    def prepare(self) -> None:
        """Precompute what repeated searches share (called by fitted models, not by
        one-shot searches). The default does nothing."""
        return None

    @classmethod
    def check_options(cls, options: dict[str, Any], kind: str = "build") -> None:
        """Refuse options this backend does not take, naming the ones it does."""
        allowed = cls.build_options if kind == "build" else cls.search_options
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise TypeError(
                f"backend {cls.name!r} takes no {kind} option(s) {unknown}; its options are "
                f"{list(allowed)}"
            )

    def search(self, Q: np.ndarray, k: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
        """k nearest training rows of each validated query row.

        Parameters
        ----------
        Q : ndarray (n_queries, n_features)
            Validated queries of any kernel dtype; promoted here to the dtype shared
            with the training rows.
        k : int
            ``1 <= k <= n_samples`` (validated by the caller).
        **options
            :attr:`search_options` of this backend.

        Returns
        -------
        distances : ndarray (n_queries, k), float64, ascending
        indices : ndarray (n_queries, k), int64
            Equal distances list the lower training index first; slots an
            approximate backend could not fill hold ``(inf, -1)``.
        """
        self.check_options(options, "search")
        return self.search_promoted(promote_query(Q, self.dtype), k, **options)

    @abc.abstractmethod
    def search_promoted(
        self, Q: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` on queries already in the shared kernel dtype."""

    def check_search_options(self, **options: Any) -> None:
        """Raise ``ValueError`` if :attr:`search_options` values do not apply to this
        backend as built (checked when a model is restored, before any search).

        The default accepts any: options validated by :meth:`check_options` apply to
        every index the backend builds.
        """
        return None

    # -- state (what :meth:`fastcls.KNearestNeighbor.get_fitted_state` stores)
    def export_arrays(self, include_data: bool | None = None) -> dict[str, np.ndarray]:
        """Arrays from which :meth:`from_arrays` rebuilds this backend.

        The default stores the training rows as ``fit_X`` (a memmap or lazy source
        is read whole).
        """
        X = self.X
        return {"fit_X": X if isinstance(X, np.ndarray) else np.asarray(X[0 : X.shape[0]])}

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        metric: str,
        *,
        n_samples: int,
        n_features: int,
        **options: Any,
    ) -> SearchBackend:
        """Rebuild a backend from :meth:`export_arrays` output.

        The caller (:meth:`fastcls.KNearestNeighbor.set_fitted_state`) has validated
        ``fit_X`` when present (dtype, shape ``(n_samples, n_features)``, finite);
        backends check any array of their own against ``n_samples`` / ``n_features``
        before using it and raise ``ValueError`` naming it.
        """
        if "fit_X" not in arrays:
            raise ValueError(f"backend {cls.name!r} needs the training rows (fit_X)")
        X = np.ascontiguousarray(arrays["fit_X"])
        if X.shape != (n_samples, n_features):
            raise ValueError(f"fit_X has shape {X.shape}, expected {(n_samples, n_features)}")
        return cls(X, metric, **options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_samples={self.n_samples}, n_features={self.n_features}, "
            f"dtype={self.dtype}, metric={self.metric!r})"
        )
