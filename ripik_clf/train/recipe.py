"""The full phase's training recipe, one at any number of replicas: its global batch,
its learning rate at every optimizer step, its epochs and its optimizer.

Every quantity is in units that do not change with the number of replicas: the global
batch is ``train.batch_size`` (each replica takes an equal share), so an epoch has the
same optimizer steps on 1 or N devices, and warm-up, patience, the step floor and the
EMA (per step) mean the same thing. A larger global batch is the user's choice of
another recipe: the peak learning rate stays ``train.full_lr`` (no scaling rule), the
steps per epoch fall, and the plan line and run.json say so.
"""

import keras

from ripik_clf.errors import UserError


def recipe_batch(batch_size, replicas):
    """The global batch: ``train.batch_size`` whatever the number of replicas, each
    replica taking an equal share, so the recipe (steps per epoch, the learning rate at
    every step, warm-up, patience, the step floor, EMA) is the same on 1 or N devices.
    (It was ``batch_size`` per replica: N workers trained another recipe, unannounced.)"""
    if batch_size % replicas:
        raise UserError(
            f"train.batch_size {batch_size} (the global batch) does not divide among "
            f"{replicas} replicas: make it a multiple of {replicas}"
        )
    return batch_size


def learning_rate_rule(tc, steps_per_epoch):
    """The full phase's learning-rate rule, in optimizer steps of the global batch:
    a linear warm-up from 0 to ``peak_lr`` (``train.full_lr``, whatever the global batch
    or the number of replicas) over ``full_warmup_epochs`` of steps, then a cosine decay
    to 0 at the last planned step. The global batch being the same on 1 or N replicas
    (:func:`recipe_batch`), so are the steps and the rate at each (recorded in run.json)."""
    total = steps_per_epoch * tc.full_epochs
    warmup = max(min(int(round(steps_per_epoch * tc.full_warmup_epochs)), total - 1), 0)
    return {"peak_lr": float(tc.full_lr), "warmup_steps": warmup, "schedule_steps": total}


def describe_rule(rule):
    """The rule in the words of the plan line."""
    warmup = rule["warmup_steps"]
    return (f"peak learning rate {rule['peak_lr']:g}"
            + (f" after {warmup} warm-up steps" if warmup else "")
            + f", cosine to 0 at step {rule['schedule_steps']}")  # fmt: skip


def learning_rate_schedule(rule):
    """The Keras schedule of an :func:`learning_rate_rule` rule: the rate at each step."""
    peak, warmup = rule["peak_lr"], rule["warmup_steps"]
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak,
        decay_steps=max(rule["schedule_steps"] - warmup, 1),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def full_phase_optimizer(tc, steps_per_epoch):
    """Adam(W) following :func:`learning_rate_rule`: a warm-up keeps the first large steps from
    wrecking the head."""
    schedule = learning_rate_schedule(learning_rate_rule(tc, steps_per_epoch))
    ema = {"use_ema": tc.ema, "ema_momentum": tc.ema_momentum}
    if tc.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay, **ema)
    return keras.optimizers.Adam(schedule, **ema)


def full_phase_epochs(tc, steps_per_epoch):
    """``full_epochs``, or more when they would be fewer than ``full_min_steps`` steps."""
    return max(tc.full_epochs, -(-tc.full_min_steps // max(steps_per_epoch, 1)))
