"""JAX set-up shared by the whole package: float64 always, synchronous dispatch on the CPU, and a
persistent compilation cache.

fimkit runs many small compiled programs (a FIM of a small ODE model is a fraction of a
millisecond of work) and needs each result at once. JAX's asynchronous dispatch on the CPU hands
every program to a worker thread and the caller then waits for it: on the kinase cascade that
hand-over cost a third of a FIM (0.13 against 0.16-0.19 ms, and made processes fast or slow at
random). So fimkit runs CPU programs on the calling thread. ``FIMKIT_ASYNC_DISPATCH=1`` leaves
JAX's default (asynchronous) in place, for a process whose other JAX work gains from it.

fimkit's own programs are compiled with XLA's classic CPU code generator for fused kernels
(``xla_cpu_use_fusion_emitters=False``; see `jit`): its programs are many small fused kernels,
and the newer emitter spends several milliseconds in MLIR per kernel. PEtab benchmark models
compile 35-50 % faster this way (Zheng 11.5 -> 6.4 s, Fujita 6.3 -> 4.0 s) and run as fast.
``FIMKIT_XLA_FUSION_EMITTERS=1`` keeps XLA's default.

The cache lives in the user's cache directory (``$XDG_CACHE_HOME/fimkit/jax`` or
``~/.cache/fimkit/jax``). ``FIMKIT_CACHE_DIR`` overrides the location; setting it to the empty string
disables the persistent cache. With the cache on, a second process that builds the same model and
design finds the compiled program on disk instead of compiling it again.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
if os.environ.get("FIMKIT_ASYNC_DISPATCH", "").strip() not in ("1", "true", "yes"):
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def _compiler_options() -> dict[str, object] | None:
    if os.environ.get("FIMKIT_XLA_FUSION_EMITTERS", "").strip() in ("1", "true", "yes"):
        return None
    if jax.default_backend() != "cpu":
        return None
    return {"xla_cpu_use_fusion_emitters": False}


def jit(fn, **kwargs):
    """`jax.jit` with fimkit's compiler options (see the module's docstring)."""
    return jax.jit(fn, compiler_options=_compiler_options(), **kwargs)


class TwoPrograms:
    """Two jitted programs run one after the other, ``second(x, y, *first(x))``, and compiled
    concurrently.

    On the first call, `second` is traced and lowered (against `middle`, the shapes and dtypes of
    `first`'s outputs) and compiled on a worker thread, while `first` is traced, lowered and
    compiled on the calling thread: XLA compiles without holding Python's lock, so the two
    compilations, and the tracing of `first`, overlap on two cores, where one program of the same
    size would run its HLO passes on one. `wrap(f)` wraps the compilation (e.g. to set a tracing
    context). If `first`'s outputs turn out not to match `middle`, `second` is compiled again
    against them.
    """

    def __init__(self, first, second, middle, wrap=None):
        self._first, self._second = first, second
        self._middle = tuple(middle)
        self._wrap = wrap or (lambda f: f)
        self._compiled = None

    def _compile(self, x, y):
        from concurrent.futures import ThreadPoolExecutor

        try:
            lowered = self._second.trace(x, y, *self._middle).lower()
        except Exception:  # a wrong declaration: traced again below, against the real shapes
            lowered = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = None if lowered is None else pool.submit(lowered.compile)
            try:
                traced = self._first.trace(x)
                first = traced.lower().compile()
            finally:
                second = None if future is None else future.result()
        info = tuple(traced.out_info)
        if second is None or [(a.shape, a.dtype) for a in info] != [
            (a.shape, a.dtype) for a in self._middle
        ]:
            second = self._second.trace(x, y, *info).lower().compile()
        return first, second

    def __call__(self, x, y):
        if self._compiled is None:
            self._compiled = self._wrap(self._compile)(x, y)
        first, second = self._compiled
        return second(x, y, *first(x))


# XLA's CPU backend fuses the expressions of a concatenation's operands into one kernel only up to
# this many operands (measured: 8 fuse, 9 give a kernel per operand).
_CONCAT_FUSED = 8


def stack_scalars(values):
    """``jax.numpy.stack(values)``, built so that XLA computes it in one fused kernel.

    Blocks of up to `_CONCAT_FUSED` values are stacked, zero-padded to the full length and added
    (nested concatenations would be flattened into one again). A model's right-hand side written
    as a list of expressions is such a stack: Zheng's (15 states) runs as 16 kernels as one stack
    and as 1 this way; its first FIM compiles 13 % faster.
    """
    n = len(values)
    if n <= _CONCAT_FUSED:
        return jnp.stack(values)
    out = None
    for a in range(0, n, _CONCAT_FUSED):
        block = jnp.stack(values[a : a + _CONCAT_FUSED])
        pad = [(a, n - a - block.shape[0])] + [(0, 0)] * (block.ndim - 1)
        block = jnp.pad(block, pad)
        out = block if out is None else out + block
    return out


def cache_dir() -> Path | None:
    """The directory of the persistent compilation cache, or ``None`` when it is disabled."""
    override = os.environ.get("FIMKIT_CACHE_DIR")
    if override is not None:
        return Path(override).expanduser() if override.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fimkit" / "jax"


def _enable_cache() -> None:
    path = cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        # A read-only home must not stop the package from working; it only loses the cache.
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program, however quick to compile: fimkit's programs are many and small.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_enable_cache()
