"""Makes abe's Optuna sweeper (abe.optuna_sweeper) known to Hydra, which discovers
sweepers only inside the `hydra_plugins` namespace package."""

from abe.optuna_sweeper import AbeOptunaSweeper  # noqa: F401
