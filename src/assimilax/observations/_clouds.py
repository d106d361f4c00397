"""Spatially correlated "cloud" masks: the gaps of satellite-like observations."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, PRNGKeyArray


def _smooth_field(key, shape, length_scale, periodic):
    """A Gaussian random field of correlation length `length_scale` (grid points):
    white noise filtered in Fourier space by a Gaussian, on a grid padded by three
    length scales along the non-periodic axes (no wrap-around correlation there)."""
    pad = [0 if p else int(np.ceil(3 * length_scale)) for p in periodic]
    padded = tuple(n + 2 * q for n, q in zip(shape, pad))
    noise = jr.normal(key, padded)
    k = [np.fft.fftfreq(n) * 2 * np.pi for n in padded]
    k2 = k[0][:, None] ** 2 + k[1][None, :] ** 2
    spectrum = np.exp(-0.5 * k2 * length_scale**2)
    modes = jnp.fft.fft2(noise)
    field = jnp.real(jnp.fft.ifft2(modes * jnp.asarray(spectrum).astype(modes.dtype)))
    return field[pad[0] : pad[0] + shape[0], pad[1] : pad[1] + shape[1]]


def cloud_mask(
    key: PRNGKeyArray,
    shape: tuple[int, int],
    fraction: float,
    length_scale: float,
    *,
    valid: Bool[ArrayLike, "ny nx"] | None = None,
    periodic: tuple[bool, bool] = (False, True),
) -> Bool[Array, "ny nx"]:
    """A mask of spatially correlated gaps ("clouds") hiding `fraction` of a grid.

    A Gaussian random field with Gaussian correlation of length `length_scale`
    (in grid points) is thresholded at its upper quantile: the clouds are its
    highest values, so they come in blobs of about that size. Exactly
    ``round(fraction * n)`` of the `valid` points are clouded (``n`` valid points;
    ties have probability zero).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `shape`: ``(ny, nx)``.
    - `fraction`: the clouded share of the valid points, in [0, 1).
    - `length_scale`: the correlation length in grid points (> 0).
    - `valid`: ``(ny, nx)`` booleans, the points that can be observed at all (e.g.
      the ocean); default: every point. Invalid points are never clouded.
    - `periodic`: per axis, whether the field wraps around (default: latitude not,
      longitude yes).

    **Returns:** ``(ny, nx)`` booleans, True where a cloud hides the point.

    **Raises:** `ValueError` for a fraction outside [0, 1), a non-positive length
    scale, a shape that is not 2D, or a `valid` mask of another shape or with no
    valid point.
    """
    if len(shape) != 2:
        raise ValueError(f"cloud_mask(shape=...) must be (ny, nx), got {shape}.")
    if not 0 <= fraction < 1:
        raise ValueError(
            f"cloud_mask(fraction=...) must be in [0, 1), got {fraction}: a fraction "
            "of 1 hides every point, and nothing would be observed."
        )
    if not length_scale > 0:
        raise ValueError(
            f"cloud_mask(length_scale=...) must be > 0 grid points, got {length_scale}."
        )
    valid = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != tuple(shape):
        raise ValueError(
            f"cloud_mask(valid=...) has shape {valid.shape}, the grid {tuple(shape)}."
        )
    count = int(valid.sum())
    if count == 0:
        raise ValueError("cloud_mask(valid=...) has no valid point.")
    clouded = int(round(fraction * count))
    if clouded == 0:
        return jnp.zeros(shape, bool)
    field = _smooth_field(key, tuple(shape), float(length_scale), periodic)
    ranked = jnp.where(jnp.asarray(valid), field, -jnp.inf)
    threshold = jnp.sort(ranked.ravel())[-clouded]
    return (ranked >= threshold) & jnp.asarray(valid)
