"""nnkit.optim: optimizers, gradient clipping and learning-rate schedules.

Names, arguments, defaults and update rules follow ``torch.optim``, so hyperparameters taken
from PyTorch code mean the same thing here. See docs/optimizers.md for the equations.
"""

from nnkit.optim import lr_scheduler
from nnkit.optim.adagrad import Adagrad
from nnkit.optim.adam import Adam, AdamW
from nnkit.optim.clip import clip_grad_norm_, clip_grad_value_
from nnkit.optim.optimizer import Optimizer
from nnkit.optim.rmsprop import RMSprop
from nnkit.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "clip_grad_norm_",
    "clip_grad_value_",
    "lr_scheduler",
]
