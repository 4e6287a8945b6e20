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
