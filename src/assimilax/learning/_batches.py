"""Mini-batch indices for the unrolled trainers (`train_lista`,
`train_learned_gradient_solver`)."""

import jax
import jax.random as jr
from jaxtyping import Array, Int, PRNGKeyArray


def epoch_batches(
    key: PRNGKeyArray, examples: int, batch_size: int, steps: int
) -> Int[Array, "steps batch"]:
    """The example indices of every step's batch: one shuffle per epoch, cut into
    `batch_size` pieces (the remainder dropped). Drawn up front because
    ``jr.choice(replace=False)`` per step costs a sort of all examples, more than
    a training step."""
    per_epoch = examples // batch_size
    epochs = -(-steps // per_epoch)
    order = jax.vmap(lambda k: jr.permutation(k, examples))(jr.split(key, epochs))
    return order[:, : per_epoch * batch_size].reshape(-1, batch_size)[:steps]
