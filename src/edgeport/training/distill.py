"""Knowledge distillation and a small training loop, for recovering accuracy after QAT or
low-bit conversion with the float model as the teacher.

- Soft targets (Hinton, Vinyals & Dean 2015): the student matches the teacher's softened
  distribution softmax(z / T); the KL term is multiplied by T² so its gradients keep their size
  when T changes.
- Logit regression (Ba & Caruana 2014): the student regresses the teacher's logits (mean
  squared error), no temperature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from edgeport.progress import progress as progress_bar
from edgeport.registry import Registry

# name -> (parameters, lr) -> optimizer
OPTIMIZERS: Registry[Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adam", lambda params, lr: torch.optim.Adam(params, lr=lr))
OPTIMIZERS.add("adamw", lambda params, lr: torch.optim.AdamW(params, lr=lr))
OPTIMIZERS.add("sgd", lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9))


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float = 4.0, alpha: float = 0.5, logit_regression: bool = False
                      ) -> torch.Tensor:
    """(1 - alpha) · CE(student, labels) + alpha · soft term, averaged over the batch.

    The soft term is T² · KL(softmax(teacher / T) || softmax(student / T)) (summed over classes,
    averaged over examples), or, with `logit_regression`, the mean squared error between the
    logits (averaged over all elements; `temperature` is then unused).

    Args:
        student_logits: [N, C] logits of the model being trained.
        teacher_logits: [N, C] logits of the teacher (no gradient flows into them).
        labels: [N] class indices, or None to train on the soft term alone (alpha is then 1).
        temperature: T > 0, the softening temperature.
        alpha: Weight of the soft term, in [0, 1].
        logit_regression: Use the logit MSE as the soft term instead of the KL divergence.

    Returns:
        The scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    teacher_logits = teacher_logits.detach()
    if logit_regression:
        soft = F.mse_loss(student_logits, teacher_logits)
    else:
        t = temperature
        soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                        reduction="batchmean", log_target=True) * (t * t)
    if labels is None:
        return soft
    return (1.0 - alpha) * F.cross_entropy(student_logits, labels) + alpha * soft


def _batches(train_data, batch_size: int, generator: torch.Generator):
    """Shuffled (x, y) batches from an (x, y) pair of tensors/arrays, or the batches of a loader."""
    if isinstance(train_data, (tuple, list)):
        x, y = (torch.as_tensor(a) for a in train_data)
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            yield x[idx], y[idx]
    else:
        yield from train_data


def fit(student: nn.Module, train_data, *, teacher: nn.Module | None = None, epochs: int, lr: float,
        batch_size: int = 64, temperature: float = 4.0, alpha: float = 0.5, optimizer: str = "adam",
        seed: int = 0, progress: bool = False) -> tuple[nn.Module, list[float]]:
    """Train `student` in place: cross-entropy, or `distillation_loss` against `teacher`.

    A minimal deterministic loop for QAT and low-bit recovery: the learning rate follows a cosine
    decay from `lr` to 0 over the epochs; no weight decay. `torch.manual_seed(seed)` is called
    first (dropout, DataLoader shuffling) and tensor data is shuffled by its own generator seeded
    with `seed`, so a run reproduces on the same machine and thread count.

    Args:
        student: The model to train (e.g. from `prepare_qat` or `prepare_lowbit`).
        train_data: An (x, y) pair of tensors or arrays (shuffled each epoch, in batches of
            `batch_size`), or a re-iterable of (x, y) batches such as a DataLoader.
        teacher: The float model to distil from, run in eval mode without gradients; None trains
            on the labels alone.
        epochs: Passes over the data (>= 1).
        lr: Initial learning rate (> 0).
        batch_size: Batch size for tensor data.
        temperature: Distillation temperature (see `distillation_loss`).
        alpha: Weight of the soft term (see `distillation_loss`).
        optimizer: A name in `OPTIMIZERS`: "adam", "adamw" or "sgd" (momentum 0.9).
        seed: Seed of the shuffling and of torch's global generator.
        progress: Show a progress bar over the epochs (on a terminal, unless EDGEPORT_QUIET=1).

    Returns:
        (student in eval mode, mean training loss of each epoch).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not isinstance(train_data, (tuple, list)) and iter(train_data) is train_data:
        raise TypeError("train_data must be an (x, y) pair or a re-iterable loader, not a one-shot iterator")
    if teacher is student:
        raise ValueError("teacher must be a different model from the student (e.g. the float original)")

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = next(student.parameters()).device
    opt = OPTIMIZERS.get(optimizer)([p for p in student.parameters() if p.requires_grad], lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if teacher is not None:
        teacher.eval()

    history = []
    epoch_iter = progress_bar(range(epochs), total=epochs, desc="fit") if progress else range(epochs)
    for _ in epoch_iter:
        student.train()
        total, count = 0.0, 0
        for x, y in _batches(train_data, batch_size, generator):
            x, y = x.to(device), y.to(device)
            logits = student(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                loss = distillation_loss(logits, teacher_logits, y, temperature, alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
        schedule.step()
        if count == 0:
            raise ValueError("train_data yielded no batches")
        history.append(total / count)
    return student.eval(), history
