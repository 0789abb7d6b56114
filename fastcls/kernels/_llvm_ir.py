"""LLVM-IR building blocks shared by the ``@intrinsic`` register tiles.

The explicit-SIMD tiles of :mod:`fastcls.kernels.l1` (``vpsadbw`` and float ``|q - x|``),
:mod:`fastcls.kernels.l2int` (integer dot products) and
:mod:`fastcls.kernels.linear_tiles` (float dot products / FMA updates) all point at
rows of 2-D arrays, mask the last partial vector of a row and reduce their vector
accumulators to scalars. These helpers emit that IR; they run while numba compiles an
intrinsic (inside ``codegen``), so the kernels built on them stay cacheable.

Every helper emits exactly the instructions its callers wrote inline before, in the same
order: the summation order of the float tiles (which their exactness arguments rely on)
is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "gathered_row_pointers",
    "horizontal_sums",
    "masked_load_function",
    "opaque_pointers",
    "row_pointers",
    "splat",
    "tail_mask",
    "transposed_tree",
]


def row_pointers(
    builder: Any, arr: Any, first: Any, count: int, *, last: Any = None, offset: Any = None
) -> list[Any]:
    """Byte (``i8*``) pointers to rows ``first, first + 1, ..., first + count - 1``.

    Parameters
    ----------
    builder : llvmlite.ir.IRBuilder
    arr : numba array struct
        ``context.make_array(typ)(context, builder, value)`` of a 2-D array.
    first : i64 value
        First row.
    count : int
        Number of rows.
    last : i64 value, optional
        Rows beyond it are clamped to it (``min(first + r, last)``): a tile at the end of
        the array repeats its last row instead of reading past it.
    offset : i64 value, optional
        Bytes added to every pointer (a feature offset).
    """
    from llvmlite import ir
    from numba.core import cgutils

    i8, i64 = ir.IntType(8), ir.IntType(64)
    stride = cgutils.unpack_tuple(builder, arr.strides, 2)[0]
    base = builder.bitcast(arr.data, i8.as_pointer())
    if offset is not None:
        base = builder.gep(base, [offset], source_etype=i8)
    out = []
    for r in range(count):
        row = builder.add(first, ir.Constant(i64, r))
        if last is not None:
            row = builder.select(builder.icmp_signed("<", row, last), row, last)
        out.append(builder.gep(base, [builder.mul(row, stride)], source_etype=i8))
    return out


def gathered_row_pointers(
    builder: Any,
    context: Any,
    signature: Any,
    args: Any,
    x_arg: int,
    rows_arg: int,
    count: int,
    first: Any = None,
) -> list[Any]:
    """Byte pointers to rows ``rows[first .. first + count - 1]`` of the 2-D array ``X``.

    ``X`` is argument ``x_arg`` of the intrinsic, the int64 row numbers argument
    ``rows_arg``; ``first`` an i64 value (default 0; the caller keeps the entries inside
    ``rows``: passing the whole array and an index spares the caller a slice per call);
    row numbers are clamped into ``X``.
    """
    from llvmlite import ir
    from numba.core import cgutils

    i64 = ir.IntType(64)
    xarr = context.make_array(signature.args[x_arg])(context, builder, args[x_arg])
    rows = context.make_array(signature.args[rows_arg])(context, builder, args[rows_arg])
    n_rows = cgutils.unpack_tuple(builder, xarr.shape, 2)[0]
    stride = cgutils.unpack_tuple(builder, xarr.strides, 2)[0]
    data = builder.bitcast(xarr.data, ir.IntType(8).as_pointer())
    last = builder.sub(n_rows, ir.Constant(i64, 1))
    zero = ir.Constant(i64, 0)
    out = []
    for r in range(count):
        at = ir.Constant(i64, r) if first is None else builder.add(first, ir.Constant(i64, r))
        row = load_item(builder, context, signature.args[rows_arg], rows, [at])
        row = builder.select(builder.icmp_signed("<", row, last), row, last)
        row = builder.select(builder.icmp_signed("<", row, zero), zero, row)
        out.append(builder.gep(data, [builder.mul(row, stride)]))
    return out


def load_item(builder: Any, context: Any, arr_type: Any, arr: Any, indices: list[Any]) -> Any:
    """Load ``arr[indices]`` (one element; any layout) from a numba array structure ``arr``."""
    from numba.core import cgutils

    ndim = arr_type.ndim
    ptr = cgutils.get_item_pointer2(
        context, builder, arr.data,
        cgutils.unpack_tuple(builder, arr.shape, ndim),
        cgutils.unpack_tuple(builder, arr.strides, ndim),
        arr_type.layout, indices,
    )  # fmt: skip
    return builder.load(ptr)


def opaque_pointers() -> bool:
    """Whether llvmlite builds IR with opaque pointers (how intrinsics' names are mangled)."""
    from llvmlite import ir

    return bool(getattr(ir.PointerType(ir.IntType(8)), "is_opaque", False))


def masked_load_function(builder: Any, vtype: Any) -> Any:
    """``llvm.masked.load`` of the float vector type ``vtype``, declared once per module:
    ``call(fn, [vector pointer, i32 alignment, <lanes x i1> mask, passthrough])``."""
    from llvmlite import ir
    from numba.core import cgutils

    lanes = vtype.count
    suffix = f"v{lanes}{'f32' if isinstance(vtype.element, ir.FloatType) else 'f64'}"
    return cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(
            vtype, [vtype.as_pointer(), ir.IntType(32), ir.VectorType(ir.IntType(1), lanes), vtype]
        ),
        f"llvm.masked.load.{suffix}.p0" + ("" if opaque_pointers() else suffix),
    )


def splat(builder: Any, value: Any, lanes: int) -> Any:
    """A vector of ``lanes`` copies of the scalar ``value`` (insert + zero shuffle)."""
    from llvmlite import ir

    i32 = ir.IntType(32)
    vtype = ir.VectorType(value.type, lanes)
    one = builder.insert_element(ir.Constant(vtype, None), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(
        one, ir.Constant(vtype, None), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    )


def tail_mask(builder: Any, lanes: int, rem: Any, lane_type: Any) -> Any:
    """``<lanes x i1>``: true on the last ``rem`` lanes (``lane >= lanes - rem``).

    The tiles read a row's last ``rem = D % lanes`` elements as one vector ending at the
    last element; the first ``lanes - rem`` lanes were counted by the previous vector and
    are masked off. ``lane_type``: integer type of the lane numbers (``i8`` for byte
    vectors, ``i64`` otherwise; ``rem`` is i64 and truncated to it).
    """
    from llvmlite import ir

    i64 = ir.IntType(64)
    first = builder.sub(ir.Constant(i64, lanes), rem)
    if lane_type.width < 64:
        first = builder.trunc(first, lane_type)
    lane_ids = ir.Constant(ir.VectorType(lane_type, lanes), list(range(lanes)))
    return builder.icmp_unsigned(">=", lane_ids, splat(builder, first, lanes))


def vectors_with_tail(
    builder: Any, n: Any, width: int, step: Callable[[Any, Any], None], lane_type: Any
) -> None:
    """``step(offset, None)`` over the whole vectors of ``width`` items in ``n`` (``i64``),
    then, if ``n % width``, ``step(n - width, mask)``: one vector ending at the last item,
    its first ``width - n % width`` lanes (counted already) masked off (:func:`tail_mask`
    with ``lane_type``)."""
    from llvmlite import ir
    from numba.core import cgutils

    i64 = ir.IntType(64)
    wconst = ir.Constant(i64, width)
    rem = builder.srem(n, wconst)
    with cgutils.for_range(builder, builder.sdiv(n, wconst), intp=i64) as loop:
        step(builder.mul(loop.index, wconst), None)
    with builder.if_then(builder.icmp_signed(">", rem, ir.Constant(i64, 0))):
        step(builder.sub(n, wconst), tail_mask(builder, width, rem, lane_type))


def transposed_tree(
    builder: Any, vectors: list[Any], lanes: int, add: Callable[[Any, Any], Any]
) -> list[tuple[Any, list[int | None]]]:
    """Sum the lanes of many vectors together: a transposed reduction tree.

    Each level adds the two halves of every group of lanes of two vectors into one vector
    holding both, so ``lanes`` vectors are reduced with ``lanes - 1`` shuffle pairs and
    adds (a reduction per vector costs ``log2(lanes)`` levels each). An odd count is
    padded with a zero vector. Stops when every group is one lane or one vector is left.

    Parameters
    ----------
    builder : llvmlite.ir.IRBuilder
    vectors : list of vector values of one type with ``lanes`` lanes
    lanes : int
        A power of two.
    add : callable
        ``builder.add`` (integer lanes) or ``builder.fadd`` (float lanes).

    Returns
    -------
    list of (vector, labels)
        ``labels[g]`` is the index in ``vectors`` whose partial sums lane group ``g``
        (``lanes / len(labels)`` lanes) of ``vector`` holds, or None for padding.
        With ``len(vectors) == lanes``: one vector whose lane ``t`` is the sum of
        ``vectors[t]``.
    """
    from llvmlite import ir

    i32 = ir.IntType(32)
    zero = ir.Constant(vectors[0].type, None)
    items: list[tuple[Any, list[int | None]]] = [(v, [k]) for k, v in enumerate(vectors)]
    groups = 1
    while groups < lanes and len(items) > 1:
        if len(items) % 2:
            items.append((zero, [None] * groups))
        size = lanes // groups
        half = size // 2
        lo = [s * lanes + g * size + t for s in (0, 1) for g in range(groups) for t in range(half)]
        hi = [i + half for i in lo]
        mask_lo = ir.Constant(ir.VectorType(i32, lanes), lo)
        mask_hi = ir.Constant(ir.VectorType(i32, lanes), hi)
        items = [
            (
                add(builder.shuffle_vector(a, b, mask_lo), builder.shuffle_vector(a, b, mask_hi)),
                la + lb,
            )
            for (a, la), (b, lb) in zip(items[0::2], items[1::2], strict=True)
        ]
        groups *= 2
    return items


def horizontal_sums(
    builder: Any, vectors: list[Any], lanes: int, add: Callable[[Any, Any], Any]
) -> list[Any]:
    """The sum of the lanes of each vector (scalars, in the order of ``vectors``).

    :func:`transposed_tree`, then the lanes left in each group are extracted and added
    from the first one (none left to add when ``len(vectors) >= lanes``). Any number of
    vectors: beyond ``lanes`` they are reduced in consecutive groups of ``lanes``, each
    its own tree.
    """
    from llvmlite import ir

    i32 = ir.IntType(32)
    items = transposed_tree(builder, vectors, lanes, add)
    sums: list[Any] = [None] * len(vectors)
    for v, labels in items:
        size = lanes // len(labels)
        for g, label in enumerate(labels):
            if label is None:
                continue
            s = builder.extract_element(v, ir.Constant(i32, g * size))
            for t in range(1, size):
                s = add(s, builder.extract_element(v, ir.Constant(i32, g * size + t)))
            sums[label] = s
    return sums


def ranges_with_early_exit(
    builder: Any,
    cuts: Any,
    n_cuts: Any,
    vector: int,
    step: Callable[[Any], None],
    check: Callable[[Any], Any],
) -> None:
    """The loop of a pruning tile: ``step`` over the vectors up to ``cuts[0]``, then
    ``check(r)`` (``r`` the number of the range just done; returns an ``i1``: go on),
    then the vectors up to ``cuts[1]``, and so on, until a check says stop or the last
    range is done; the builder is left after the loop.

    ``cuts``: an ``i64*`` to the ends of the ranges, in vectors; ``n_cuts`` their
    number (``i64``, at least 1); ``step(offset)`` emits one vector step at feature
    ``offset`` (``vector`` features a step).
    """
    from llvmlite import ir
    from numba.core import cgutils

    i64 = ir.IntType(64)
    r_slot = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
    start_slot = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
    bb_range = builder.append_basic_block("range")
    bb_done = builder.append_basic_block("done")
    builder.branch(bb_range)
    builder.position_at_end(bb_range)
    r = builder.load(r_slot)
    start = builder.load(start_slot)
    end = builder.load(builder.gep(cuts, [r]))
    with cgutils.for_range(builder, builder.sub(end, start), intp=i64) as loop:
        step(builder.mul(builder.add(start, loop.index), ir.Constant(i64, vector)))
    go_on = check(r)
    r1 = builder.add(r, ir.Constant(i64, 1))
    builder.store(r1, r_slot)
    builder.store(end, start_slot)
    builder.cbranch(builder.and_(go_on, builder.icmp_signed("<", r1, n_cuts)), bb_range, bb_done)
    builder.position_at_end(bb_done)


def any_lane(builder: Any, mask: Any) -> Any:
    """``i1``: whether any lane of the vector of ``i1`` ``mask`` is set (one movemask and
    test on x86)."""
    from llvmlite import ir

    bits = ir.IntType(mask.type.count)
    return builder.icmp_unsigned("!=", builder.bitcast(mask, bits), ir.Constant(bits, 0))
