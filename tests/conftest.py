import jax

import fimkit  # noqa: F401  (turns on float64 and the compilation cache)

jax.config.update("jax_enable_x64", True)
