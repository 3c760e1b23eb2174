"""superpos_jax: whole grids of toy models of superposition in one compiled JAX program."""

__version__ = "0.1.0"
