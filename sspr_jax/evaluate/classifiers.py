"""Few-label classifier heads on frozen embeddings (REFERENCE.md, "Classifiers").

The thesis ran scikit-learn 5-fold stratified grid searches on L2-normalised
embeddings (MLPClassifier with L-BFGS, ``max_iter=10_000``; SVC) and reported
accuracy, the confusion matrix and a "1/rank" mAP. This module does the MLP
part (plus a multinomial logistic head) in jitted, vmapped XLA programs, and
keeps the SVC grid in scikit-learn for parity.

Heads (float32, full batch):

* ``linear``: multinomial logistic regression, ``logits = x W + b``; starts at
  zero like sklearn's ``LogisticRegression`` (convex, so the start only
  matters for speed).
* ``mlp``: ReLU MLP with the thesis's hidden sizes ``(32,) (64,) (128,)
  (128, 64)`` and a softmax output, initialised like sklearn's
  ``MLPClassifier`` (Glorot uniform, bound ``sqrt(6 / (fan_in + fan_out))``,
  for weights AND biases).

Objective (sklearn ``MLPClassifier._backprop``):
``mean cross-entropy + 0.5 * alpha * sum_layers ||W||_F^2 / n_samples``
(biases are not penalised; ``n_samples`` = the fold's train size).  For the
linear head this is exactly sklearn ``LogisticRegression(C=1/alpha)``'s
objective divided by ``n_samples``.  Solver: L-BFGS (optax's two-loop
recursion, memory 10, as scipy's) with a backtracking Armijo line search of
its own (``evaluate_fit``), run to scikit-learn's stopping rule (max
|gradient| <= ``tol`` 1e-4, or no relative decrease beyond scipy's ``ftol``)
with the thesis's cap of ``MAX_ITER`` = 10,000 iterations. The cap matters:
on random-init embeddings sklearn's MLP reaches ~10-14 % at 200 iterations
and ~38 % at convergence (REFERENCE.md). ``HEAD_PRESETS['quick']`` trades
that for time.

Batches: a vmapped fit advances one objective evaluation at a time, each
fit in its own line search, so no fit waits for another's backtracking
(under ``vmap`` a line-search loop inside an iteration would run every fit
until the slowest accepts). The host looks at the batch every ``CHUNK``
evaluations: it counts the fits that stopped (the progress bar) and drops
them from the batch where that saves more work than a recompile costs
(``_worth_dropping``: a count of FLOPs, not a timing, so results do not
depend on the machine's load).

Cross-validation: the folds are 0/1 masks over the train rows, so every fold
has the same shapes, and one architecture's folds x alphas are one batch
(``fit_batch``). The grid point with the best mean validation accuracy
(ties: the first in grid order, as ``GridSearchCV``) is selected, refitted
on all train rows (``refit='best'``, as ``GridSearchCV``; ``'all'`` refits
every point) and evaluated on the test part.

Centring (exact, off by default): ``x W + b = (x - m) W + (b + m W)`` and
biases are not penalised, so subtracting the train mean changes neither the
objective's values nor its optimum. It does change L-BFGS's path (the
substitution is not orthogonal): on random-init-like features centred fits
ended at higher objectives than ``MLPClassifier`` and ~5 points lower test
accuracy (3 starts, measured 2026-12-02), uncentred ones level with it.

Rank reduction (exact, on by default when ``n_train < dim``): the optimum of
an L2-penalised model whose first layer sees ``x W1`` has ``W1`` in the row
space of the train ``x`` (any orthogonal part only adds penalty).  So with
``x_train = U S V^T`` (thin SVD) we train on ``x V`` (``n_train`` columns
instead of ``dim``: 852 instead of 2,048 for the strict split) and evaluate
the test part on ``x_test V``; ``||V W1'|| = ||W1'||`` so the penalty is
unchanged.  For the convex linear head the optimum is identical; for MLPs the
objective is identical, only the random start differs (its orthogonal part is
dropped).

Folds: ``sklearn.model_selection.StratifiedKFold`` without shuffling by
default, which is what the thesis's ``GridSearchCV(cv=5)`` used.  Classes with
fewer members than folds are allowed (sklearn warns; the warning is silenced
and the count reported as ``classes_below_folds``): such a class is missing
from some validation folds, and from the fold's train part when all its
members are in that fold's validation part, exactly as in ``GridSearchCV``.
If even the largest class has fewer members than folds (StratifiedKFold
raises), plain ``KFold`` is used instead and ``fold_method`` says so.

Metrics (``classification_metrics``): accuracy, per-class precision/recall,
confusion matrix and the thesis's rank mAP: each test sample's AP is
``1 / rank`` of its true class in the predicted scores, with ties counted
against it (rank = #classes scoring >= the true class, as
``average_precision_score`` would); a test class the head never saw in
training gets AP 0; AP is averaged per true class, then over classes.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.model_selection import KFold
from sklearn.model_selection import StratifiedKFold

from sspr_jax.core import ops
from sspr_jax.evaluate import checks
from sspr_jax.evaluate import progress as progress_lib
from sspr_jax.evaluate import splits as splits_lib

HEADS = ('linear', 'mlp', 'svc')  # what `few_label_eval` fits
SPLITS = ('standard', 'strict')
MLP_HIDDEN = ((32,), (64,), (128,), (128, 64))  # thesis
MLP_ALPHAS = (0.01, 0.1)  # thesis
# Not in the thesis; alpha = 1 / C of LogisticRegression.
LINEAR_ALPHAS = (1e-3, 1e-2, 0.1, 1.0)
SVC_C = (0.1, 0.5, 1, 5, 10)  # thesis
SVC_GRID = (
  {'kernel': ['linear', 'rbf'], 'C': list(SVC_C)},
  {'kernel': ['poly'], 'degree': [2, 3, 4, 5, 10], 'C': list(SVC_C)},
)
# scikit-learn's MLPClassifier(solver='lbfgs') stopping rule, at the thesis's
# cap: scipy L-BFGS-B with gtol=tol and its default ftol (factr 1e7 x eps).
MAX_ITER = 10_000
TOL = 1e-4
FTOL = float(np.finfo(np.float64).eps) * 1e7
CHUNK = 50  # evaluations between the host's looks at a batch of fits
# Line search (evaluate_fit): Armijo's sufficient decrease, trials per
# iteration (optax's backtracking defaults: 1e-4; scipy's: 20 zoom steps).
ARMIJO = 1e-4
BACKTRACK_STEPS = 15
# Work (FLOPs) that dropping stopped fits from a batch must save: about a
# recompile of the smaller batch (1-2 s at this CPU's ~50 GFLOP/s).
DROP_FLOPS = 5e10
# Few-label head settings by name (config.evaluate.head_preset). 'thesis':
# its grid to scikit-learn's convergence; 'quick': for a first look.
HEAD_PRESETS = {
  'thesis': dict(mlp_hidden=MLP_HIDDEN, max_iter=MAX_ITER, tol=TOL),
  'quick': dict(mlp_hidden=((32,),), max_iter=300, tol=TOL),
}

Params = list  # [{'w': [fan_in, fan_out], 'b': [fan_out]}, ...]


# --------------------------------------------------------------------------
# Model, objective, solver.


def init_params(
  key, dims: Sequence[int], *, zeros: bool = False, fan_in0: int | None = None
) -> Params:
  """Layers ``dims[0] -> ... -> dims[-1]``; sklearn MLPClassifier's init.

  ``fan_in0`` overrides the first layer's fan-in in the Glorot bound (used
  when training in a rank-reduced basis, to keep the original scale).
  """
  params = []
  keys = jax.random.split(key, max(len(dims) - 1, 1))
  for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
    if zeros:
      params.append(
        {
          'w': jnp.zeros((fan_in, fan_out), jnp.float32),
          'b': jnp.zeros((fan_out,), jnp.float32),
        }
      )
      continue
    bound = np.sqrt(
      6.0 / ((fan_in0 if i == 0 and fan_in0 else fan_in) + fan_out)
    )
    kw, kb = jax.random.split(keys[i])
    params.append(
      {
        'w': jax.random.uniform(
          kw, (fan_in, fan_out), jnp.float32, -bound, bound
        ),
        'b': jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
      }
    )
  return params


def logits_fn(params: Params, x: jax.Array) -> jax.Array:
  """ReLU between layers, none after the last."""
  h = x
  for i, layer in enumerate(params):
    h = h @ layer['w'] + layer['b']
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  return h


def objective(params: Params, x, y, weights, alpha) -> jax.Array:
  """sklearn's: weighted mean cross-entropy + 0.5 alpha sum||W||^2 / sum(w).

  ``y``: int class ids; ``weights``: per-row weights (0/1 fold masks).
  """
  logits = logits_fn(params, x)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[
    :, 0
  ]
  n = jnp.maximum(jnp.sum(weights), 1.0)
  penalty = sum(jnp.sum(jnp.square(layer['w'])) for layer in params)
  return jnp.sum(weights * ce) / n + 0.5 * alpha * penalty / n


def _all_finite(tree) -> jax.Array:
  return jnp.all(
    jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)])
  )


def _max_abs(tree) -> jax.Array:
  return jnp.max(
    jnp.stack([jnp.max(jnp.abs(l)) for l in jax.tree.leaves(tree)])
  )


class Fit(NamedTuple):
  """One L-BFGS run's state (under ``vmap``: a batch of them).

  The run advances one objective evaluation at a time (``evaluate_fit``): a
  trial point of the current line search, accepted or halved. So fits in a
  batch never wait for each other's line searches.
  """

  params: Params  # The last accepted point,
  value: jax.Array  # its objective
  grad: Params  # and gradient.
  memory: Any  # L-BFGS curvature pairs (optax.scale_by_lbfgs's state).
  direction: Params  # The line search's direction,
  slope: jax.Array  # <grad, direction> (< 0),
  step: jax.Array  # the next trial's step size,
  trials: jax.Array  # int32, trials done in this line search.
  last_step: jax.Array  # The previous iteration's accepted step.
  fresh: jax.Array  # bool: the next evaluation starts a line search.
  n_iter: jax.Array  # int32, iterations done (sklearn's ``n_iter_``)
  n_eval: jax.Array  # int32, objective evaluations done
  converged: jax.Array  # bool: the stopping rule held (not the cap)
  last_reset: jax.Array  # int32: iteration of the last memory reset


def _lbfgs(memory_size: int):
  """The L-BFGS direction ``-H g`` (optax's two-loop recursion)."""
  return optax.chain(
    optax.scale_by_lbfgs(memory_size=memory_size), optax.scale(-1.0)
  )


def _where(cond, a, b):
  return jax.tree.map(lambda u, v: jnp.where(cond, u, v), a, b)


def start_fit(
  params: Params, x, y, weights, alpha, *, tol: float = TOL, memory_size=10
) -> Fit:
  """The state before the first iteration (converged if the start is)."""
  value, grad = jax.value_and_grad(objective)(params, x, y, weights, alpha)
  zeros = jax.tree.map(jnp.zeros_like, params)
  return Fit(
    params=params,
    value=value,
    grad=grad,
    memory=_lbfgs(memory_size).init(params),
    direction=zeros,
    slope=jnp.zeros((), jnp.float32),
    step=jnp.ones((), jnp.float32),
    trials=jnp.zeros((), jnp.int32),
    last_step=jnp.full((), 0.5, jnp.float32),  # The first trial: step 1.
    fresh=jnp.ones((), bool),
    n_iter=jnp.zeros((), jnp.int32),
    n_eval=jnp.ones((), jnp.int32),
    converged=_max_abs(grad) <= tol,
    last_reset=jnp.full((), -memory_size, jnp.int32),  # The start is no reset.
  )


def evaluate_fit(
  f: Fit,
  x,
  y,
  weights,
  alpha,
  *,
  tol: float = TOL,
  ftol: float = FTOL,
  memory_size: int = 10,
) -> Fit:
  """One objective evaluation of an L-BFGS run (the caller masks stopped ones).

  Each iteration takes the L-BFGS direction ``d`` (a steepest-descent step
  where the memory gives none downhill), then a backtracking (Armijo) line
  search: the first trial step is ``min(2 x the last accepted step, 1)``
  (as optax's ``scale_by_backtracking_linesearch`` with increase 2), halved
  until ``f(p + t d) <= f(p) + ARMIJO t <grad, d>``, at most
  ``BACKTRACK_STEPS`` trials. Every trial is one ``value_and_grad``, so an
  accepted point's gradient is already there (optax's backtracking search
  recomputes it through a linearisation under ``cond``, which ``vmap``
  turns into work at every trial).

  The iteration ends on acceptance or after the last trial, and then
  scikit-learn's stopping rule is checked (scipy L-BFGS-B's, as
  ``MLPClassifier(solver='lbfgs')`` calls it): stop when ``max |gradient|
  <= tol`` (its ``gtol``) or the relative decrease ``(f_k - f_k+1) /
  max(|f_k|, |f_k+1|, 1) <= ftol``. A last trial that raises the objective
  or is not finite is not taken. After an iteration without that decrease
  the memory is reset, as scipy restarts after a failed line search, and
  the run ends at such an iteration within ``memory_size`` iterations of
  the last reset: in float32 a tiny accepted step often shows no decrease
  at all, and optax's L-BFGS keeps curvature pairs with ``s.y < 0`` (a
  non-convex MLP makes them), so one flat step is not the end; but
  resetting at every other step near the optimum would crawl to the cap as
  gradient descent.
  """
  lbfgs = _lbfgs(memory_size)
  # A new line search: the direction from the memory, updated with the
  # accepted point (optax stores the pair (p_k+1 - p_k, g_k+1 - g_k) here).
  direction, memory = lbfgs.update(f.grad, f.memory, f.params)
  reset = lbfgs.init(f.params)
  slope = optax.tree.vdot(f.grad, direction)
  downhill = jnp.isfinite(slope) & (slope < 0)
  scale = jnp.minimum(1.0, 1.0 / optax.tree.norm(f.grad))
  steepest = jax.tree.map(lambda g: -scale * g, f.grad)
  direction = _where(downhill, direction, steepest)
  memory = _where(downhill, memory, reset)
  slope = jnp.where(
    downhill, slope, -scale * optax.tree.norm(f.grad, squared=True)
  )
  direction, memory, slope, step, trials = _where(
    f.fresh,
    (direction, memory, slope, jnp.minimum(2.0 * f.last_step, 1.0), 0),
    (f.direction, f.memory, f.slope, f.step, f.trials),
  )

  trial = jax.tree.map(lambda p, d: p + step * d, f.params, direction)
  value, grad = jax.value_and_grad(objective)(trial, x, y, weights, alpha)
  finite = _all_finite((value, grad))
  accepted = finite & (value <= f.value + ARMIJO * step * slope)
  trials = trials + 1
  ends = accepted | (trials >= BACKTRACK_STEPS)
  take = ends & finite & (value <= f.value)
  decrease = (f.value - value) / jnp.maximum(
    jnp.maximum(jnp.abs(f.value), jnp.abs(value)), 1.0
  )
  progress = take & (decrease > ftol)
  new_grad = _where(take, grad, f.grad)
  # A flat iteration soon after a reset ends the run; later ones reset.
  stop = ends & ~progress & (f.n_iter - f.last_reset < memory_size)
  return Fit(
    params=_where(take, trial, f.params),
    value=jnp.where(take, value, f.value),
    grad=new_grad,
    memory=_where(ends & ~progress, reset, memory),
    direction=direction,
    slope=slope,
    step=0.5 * step,
    trials=trials,
    last_step=jnp.where(take, step, f.last_step),
    fresh=ends,
    n_iter=f.n_iter + ends.astype(jnp.int32),
    n_eval=f.n_eval + 1,
    converged=stop | (ends & (_max_abs(new_grad) <= tol)),
    last_reset=jnp.where(ends & ~progress, f.n_iter, f.last_reset),
  )


def _running(f: Fit, max_iter) -> jax.Array:
  return ~f.converged & (f.n_iter < max_iter)


def fit(
  params: Params,
  x,
  y,
  weights,
  alpha,
  *,
  max_iter: int = MAX_ITER,
  tol: float = TOL,
  ftol: float = FTOL,
  memory_size: int = 10,
) -> tuple[Params, Fit]:
  """Minimise ``objective`` from ``params`` to scikit-learn's stopping rule.

  Pure and traceable. Returns the params and the final ``Fit`` (value,
  ``n_iter``, ``converged``). ``fit_batch`` runs many side by side.
  """
  kw = dict(tol=tol, memory_size=memory_size)
  state = start_fit(params, x, y, weights, alpha, **kw)
  state = jax.lax.while_loop(
    lambda f: _running(f, max_iter),
    lambda f: evaluate_fit(f, x, y, weights, alpha, ftol=ftol, **kw),
    state,
  )
  return state.params, state


@functools.partial(jax.jit, static_argnames=('memory_size',))
def _start_batch(params0, x, y, weights, alphas, tol, *, memory_size):
  return jax.vmap(
    functools.partial(start_fit, tol=tol, memory_size=memory_size),
    in_axes=(None, None, None, 0, 0),
  )(params0, x, y, weights, alphas)


@functools.partial(
  jax.jit, static_argnames=('memory_size',), donate_argnums=(0,)
)
def _evaluate_batch(
  fits, x, y, weights, alphas, evaluations, max_iter, tol, ftol, *, memory_size
):
  """Up to ``evaluations`` evaluations of every running fit in the batch."""

  def one(f, w, a):
    new = evaluate_fit(
      f, x, y, w, a, tol=tol, ftol=ftol, memory_size=memory_size
    )
    return _where(_running(f, max_iter), new, f)

  def body(carry):
    t, f = carry
    return t + 1, jax.vmap(one)(f, weights, alphas)

  def cond(carry):
    t, f = carry
    return (t < evaluations) & jnp.any(_running(f, max_iter))

  return jax.lax.while_loop(cond, body, (jnp.int32(0), fits))[1]


def fit_flops(num_rows: int, params: Params) -> float:
  """Multiply-adds x 2 of one ``value_and_grad`` of one fit (forward 1x,
  backward 2x the layers' matmuls)."""
  return 6.0 * num_rows * sum(int(l['w'].size) for l in params)


def _worth_dropping(rows, running, evaluations, flops):
  """Whether to drop the stopped fits from the batch (one more compile).

  Dropping saves the stopped rows' share of each remaining evaluation; the
  fits still running are assumed to run about as long again as they have.
  It pays when that exceeds ``DROP_FLOPS``, about a compile's cost, and is
  never done for a quarter of the rows or less. A count of work, not a
  timing: the same inputs give the same batches, and so the same rounding
  and results, whatever the machine's load or compile cache.
  """
  if running > rows * 3 // 4:
    return False
  return flops * (rows - running) * max(evaluations, CHUNK) > DROP_FLOPS


def fit_batch(
  params0: Params,
  x,
  y,
  weights,
  alphas,
  *,
  max_iter: int = MAX_ITER,
  tol: float = TOL,
  ftol: float = FTOL,
  memory_size: int = 10,
  chunk: int = CHUNK,
  on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
  """Fits ``len(alphas)`` problems from one start, each to its own stop.

  ``weights`` [B, n] (row weights: fold masks), ``alphas`` [B]. The batch
  runs as one vmapped L-BFGS (``evaluate_fit``) in chunks of ``chunk``
  evaluations; between chunks the host counts the problems that stopped
  (``on_chunk(newly_finished, iteration)``, e.g. a progress bar;
  ``iteration``: the most iterations a running fit has done) and drops the
  stopped ones from the batch where that saves more work than a compile
  costs (``_worth_dropping``), so converged fits stop costing compute.
  Returns numpy ``params`` (leading axis B), ``value``, ``n_iter``,
  ``n_eval``, ``converged`` [B].
  """
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.int32)
  weights = jnp.asarray(weights, jnp.float32)
  alphas = jnp.asarray(alphas, jnp.float32)
  scalars = (jnp.int32(max_iter), jnp.float32(tol), jnp.float32(ftol))
  flops = fit_flops(x.shape[0], params0)
  fits = _start_batch(
    params0, x, y, weights, alphas, jnp.float32(tol), memory_size=memory_size
  )
  rows = np.arange(len(alphas))  # The problem each row of `fits` is.
  counted = np.zeros(len(alphas), bool)
  finished_parts = []
  evaluations = 0
  keys = ('params', 'value', 'n_iter', 'n_eval', 'converged')

  def take(tree, index):
    return jax.tree.map(lambda leaf: leaf[index], tree)

  def collect(index):
    part = jax.device_get(take(tuple(getattr(fits, k) for k in keys), index))
    finished_parts.append((rows[index], part))

  while True:
    n_iter, converged = jax.device_get((fits.n_iter, fits.converged))
    stopped = converged | (n_iter >= max_iter)
    new = stopped & ~counted[rows]
    counted[rows[new]] = True
    if on_chunk is not None:
      on_chunk(int(new.sum()), int(n_iter[~stopped].max(initial=n_iter.max())))
    if stopped.all():
      collect(np.arange(len(rows)))
      break
    running = np.flatnonzero(~stopped)
    if _worth_dropping(len(rows), len(running), evaluations, flops):
      collect(np.flatnonzero(stopped))
      fits, weights, alphas = take((fits, weights, alphas), running)
      rows = rows[running]
    fits = _evaluate_batch(
      fits,
      x,
      y,
      weights,
      alphas,
      jnp.int32(chunk),
      *scalars,
      memory_size=memory_size,
    )
    evaluations += chunk
  order = np.concatenate([r for r, _ in finished_parts])
  inverse = np.argsort(order)
  parts = jax.tree.map(
    lambda *leaves: np.concatenate(leaves)[inverse],
    *[part for _, part in finished_parts],
  )
  return dict(zip(keys, parts))


def predict_proba(params: Params, x) -> jax.Array:
  return jax.nn.softmax(logits_fn(params, x), axis=-1)


# --------------------------------------------------------------------------
# Folds and the jitted grid program.


def stratified_folds(
  y, n_splits: int = 5, *, shuffle: bool = False, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
  """Validation masks ``[n_splits, n]`` (bool) and how they were made.

  ``StratifiedKFold(n_splits, shuffle, random_state=seed if shuffle)``; its
  warning about classes smaller than ``n_splits`` is silenced (counted in
  ``info['classes_below_folds']``).  When every class is smaller than
  ``n_splits`` (StratifiedKFold refuses), ``KFold`` with the same settings.
  """
  y = np.asarray(y)
  if len(y) < n_splits:
    raise ValueError(f'{len(y)} samples cannot make {n_splits} folds')
  _, counts = np.unique(y, return_counts=True)
  info = {
    'classes_below_folds': int(np.sum(counts < n_splits)),
    'fold_method': 'StratifiedKFold',
  }
  kw = dict(
    n_splits=n_splits, shuffle=shuffle, random_state=seed if shuffle else None
  )
  if counts.max() >= n_splits:
    with warnings.catch_warnings():
      warnings.filterwarnings('ignore', message='The least populated class')
      split_iter = list(StratifiedKFold(**kw).split(np.zeros(len(y)), y))
  else:
    info['fold_method'] = 'KFold'
    split_iter = list(KFold(**kw).split(np.zeros(len(y))))
  masks = np.zeros((n_splits, len(y)), bool)
  for f, (_, val) in enumerate(split_iter):
    masks[f, val] = True
  return masks, info


@functools.partial(jax.jit, static_argnames=('num_folds',))
def _val_accuracy(params, x, y, val_masks, *, num_folds):
  """Validation accuracy [F, G] of a batch [F * G] of fits, fold-major."""
  correct = jax.vmap(
    lambda p: (jnp.argmax(logits_fn(p, x), axis=-1) == y).astype(jnp.float32)
  )(params)
  correct = correct.reshape(num_folds, -1, x.shape[0])
  val = val_masks.astype(jnp.float32)
  return (
    jnp.sum(correct * val[:, None, :], axis=-1)
    / (jnp.maximum(jnp.sum(val, axis=-1), 1.0)[:, None])
  )


_batch_proba = jax.jit(jax.vmap(predict_proba, (0, None)))


def _grid(head: str, hidden_sizes, alphas):
  if head == 'linear':
    return ((),), (tuple(LINEAR_ALPHAS if alphas is None else alphas),)
  if head == 'mlp':
    hidden_sizes = MLP_HIDDEN if hidden_sizes is None else hidden_sizes
    hidden_sizes = tuple(
      tuple(h) if isinstance(h, (tuple, list)) else (int(h),)
      for h in hidden_sizes
    )
    alphas = tuple(MLP_ALPHAS if alphas is None else alphas)
    return hidden_sizes, (alphas,) * len(hidden_sizes)
  raise ValueError(f"unknown head {head!r}; valid: 'linear', 'mlp'")


class Basis(NamedTuple):
  """Where the heads train: ``(x - mean) @ v`` (``fit_basis``)."""

  mean: np.ndarray | None  # [D] or None (not centred)
  v: np.ndarray | None  # [D, r] or None (not rank-reduced)

  def project(self, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if self.mean is not None:
      x = x - self.mean
    if self.v is not None:
      x = (np.asarray(x, np.float64) @ self.v).astype(np.float32)
    return x


def fit_basis(train_x, *, center: bool, reduce_rank: bool) -> Basis:
  """The train rows' mean (``center``) and, when ``reduce_rank`` and
  ``n_train < dim``, their span's orthonormal basis (thin SVD)."""
  train_x = np.asarray(train_x, np.float32)
  mean = (
    train_x.mean(axis=0, dtype=np.float64).astype(np.float32)
    if center
    else None
  )
  v = None
  if reduce_rank and train_x.shape[0] < train_x.shape[1]:
    centred = train_x - mean if center else train_x
    v = np.linalg.svd(np.asarray(centred, np.float64), full_matrices=False)[2].T
  return Basis(mean, v)


def rank_reduce(train_x, test_x) -> tuple[np.ndarray, np.ndarray]:
  """Coordinates in the train rows' span: ``(x_train V, x_test V)``, float32.

  Exact for L2-penalised heads (module docstring); only when n < dim.
  """
  basis = fit_basis(train_x, center=False, reduce_rank=True)
  if basis.v is None:
    basis = Basis(None, np.eye(np.shape(train_x)[1]))
  return basis.project(train_x), basis.project(test_x)


REFITS = ('best', 'all')


def cross_validate(
  train_x,
  train_y,
  test_x,
  *,
  head: str = 'mlp',
  hidden_sizes=None,
  alphas=None,
  folds: int = 5,
  shuffle: bool = False,
  seed: int = 0,
  max_iter: int = MAX_ITER,
  tol: float = TOL,
  center: bool = False,
  reduce_rank: bool = True,
  refit: str = 'best',
  val_masks=None,
  progress: str | None = None,
) -> dict[str, Any]:
  """Grid search (folds x grid), refit, test scores.

  Each architecture's folds x alphas are one ``fit_batch``, each fit run to
  scikit-learn's stopping rule (``max_iter``, ``tol``). ``refit='best'``
  (``GridSearchCV``'s) then fits the selected grid point on all train rows;
  ``'all'`` refits every grid point, in its architecture's batch, and
  returns ``all_test_proba`` [G, T, C] too. ``train_y`` may be any labels;
  columns of the scores follow ``classes = np.unique(train_y)``.
  ``val_masks`` ([folds, n_train] bool) overrides the folds. Returns
  ``classes``, ``test_proba`` [T, C] of the selected grid point's refit,
  ``best`` ({'hidden', 'alpha'}), ``grid`` (list of {'hidden', 'alpha',
  'mean_val_accuracy', 'val_accuracy', 'n_iter', 'converged'}, per fold),
  ``refits`` ({'index', 'n_iter', 'converged'} per refit),
  ``fit_iterations`` (every fit's), ``cv_accuracy`` (the best mean
  validation accuracy), the fold info and ``seconds``. ``progress``: the
  description of a bar that counts finished fits (None: no bar).
  """
  start = time.perf_counter()
  train_x = np.asarray(train_x, np.float32)
  checks.check_matrix(train_x, 'train embeddings')
  test_x = np.asarray(test_x, np.float32).reshape(-1, train_x.shape[1])
  checks.check_finite(train_x, 'train embeddings')
  checks.check_finite(test_x, 'test embeddings')
  if np.shape(train_y) != (len(train_x),):
    raise ValueError(
      f'train labels must be [{len(train_x)}] (train embeddings '
      f'rows), got shape {np.shape(train_y)}'
    )
  if refit not in REFITS:
    raise ValueError(f'unknown refit {refit!r}; valid: {REFITS}')
  classes, y = np.unique(np.asarray(train_y), return_inverse=True)
  if val_masks is None:
    val_masks, info = stratified_folds(y, folds, shuffle=shuffle, seed=seed)
  else:
    val_masks = np.asarray(val_masks, bool)
    info = {'fold_method': 'given', 'classes_below_folds': None}
  archs, alpha_sets = _grid(head, hidden_sizes, alphas)
  dim = train_x.shape[1]
  basis = fit_basis(train_x, center=center, reduce_rank=reduce_rank)
  train_x, test_x = basis.project(train_x), basis.project(test_x)
  num_folds = int(val_masks.shape[0])
  refit_all = refit == 'all'
  train_masks = (~val_masks).astype(np.float32)
  if refit_all:  # An extra "fold": all train rows.
    train_masks = np.concatenate(
      [train_masks, np.ones((1, len(y)), np.float32)]
    )
  x, y_dev = jnp.asarray(train_x), jnp.asarray(y, jnp.int32)
  test_dev, val_dev = jnp.asarray(test_x), jnp.asarray(val_masks)
  grid, probas, refits, starts = [], [], [], []
  num_points = sum(len(a) for a in alpha_sets)
  total = num_folds * num_points + (num_points if refit_all else 1)
  with progress_lib.bar(
    progress or '', total, 'fit', enabled=progress is not None
  ) as bar:

    def run(params0, masks, alphas, hidden):
      def finished(count, iteration):
        bar.update(count)
        bar.set_postfix_str(f'{_arch_name(hidden)} iteration {iteration}')

      bar.set_postfix_str(f'{_arch_name(hidden)} starting')
      return fit_batch(
        params0,
        x,
        y_dev,
        masks,
        np.asarray(alphas, np.float32),
        max_iter=max_iter,
        tol=tol,
        on_chunk=finished,
      )

    for i, (hidden, arch_alphas) in enumerate(zip(archs, alpha_sets)):
      key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
      params0 = init_params(
        key,
        (x.shape[1], *hidden, len(classes)),
        zeros=not hidden,
        fan_in0=dim,
      )
      g = len(arch_alphas)
      fits = run(
        params0,
        np.repeat(train_masks, g, axis=0),  # Fold-major: (fold, alpha).
        np.tile(arch_alphas, len(train_masks)),
        hidden,
      )
      params = jax.tree.map(lambda leaf: leaf[: num_folds * g], fits['params'])
      val_acc = np.asarray(
        _val_accuracy(params, x, y_dev, val_dev, num_folds=num_folds)
      )
      n_iter = fits['n_iter'].reshape(len(train_masks), g)
      converged = fits['converged'].reshape(len(train_masks), g)
      for j, alpha in enumerate(arch_alphas):
        starts.append(params0)
        grid.append(
          {
            'hidden': hidden,
            'alpha': float(alpha),
            'mean_val_accuracy': float(np.mean(val_acc[:, j])),
            'val_accuracy': [float(v) for v in val_acc[:, j]],
            'n_iter': [int(v) for v in n_iter[:num_folds, j]],
            'converged': [bool(v) for v in converged[:num_folds, j]],
          }
        )
        if refit_all:
          refits.append(
            {
              'index': len(grid) - 1,
              'n_iter': int(n_iter[-1, j]),
              'converged': bool(converged[-1, j]),
            }
          )
      if refit_all:
        last = jax.tree.map(lambda leaf: leaf[num_folds * g :], fits['params'])
        probas.append(np.asarray(_batch_proba(last, test_dev)))
    mean_acc = np.array([p['mean_val_accuracy'] for p in grid])
    best = int(np.argmax(mean_acc))  # The first of ties, as GridSearchCV.
    if not refit_all:
      point = grid[best]
      fits = run(
        starts[best],
        np.ones((1, len(y)), np.float32),
        [point['alpha']],
        point['hidden'],
      )
      refits.append(
        {
          'index': best,
          'n_iter': int(fits['n_iter'][0]),
          'converged': bool(fits['converged'][0]),
        }
      )
      test_proba = np.asarray(_batch_proba(fits['params'], test_dev))[0]
  out = {}
  if refit_all:
    all_proba = np.concatenate(probas)
    test_proba = all_proba[best]
    out['all_test_proba'] = all_proba
  iterations = np.array(
    [n for p in grid for n in p['n_iter']] + [r['n_iter'] for r in refits]
  )
  capped = [not c for p in grid for c in p['converged']]
  capped += [not r['converged'] for r in refits]
  return {
    'classes': classes,
    'test_proba': test_proba,
    **out,
    'best': {'hidden': grid[best]['hidden'], 'alpha': grid[best]['alpha']},
    'best_index': best,
    'cv_accuracy': grid[best]['mean_val_accuracy'],
    'grid': grid,
    'refits': refits,
    'fit_iterations': iterations,
    'num_folds': num_folds,
    'n_iter_max': int(iterations.max()),
    'n_iter_mean': float(iterations.mean()),
    'num_capped': int(sum(capped)),
    **info,
    'seconds': time.perf_counter() - start,
  }


def _arch_name(hidden) -> str:
  return f'({",".join(map(str, hidden))})' if hidden else 'linear'


def fit_head(
  train_x,
  train_y,
  *,
  hidden=(),
  alpha: float = 0.01,
  seed: int = 0,
  arch_index: int = 0,
  max_iter: int = MAX_ITER,
  tol: float = TOL,
) -> tuple[Params, np.ndarray]:
  """One head on all of ``train_x`` (no CV, no centring or rank reduction).

  Returns params and classes. Same start as ``cross_validate`` (same
  ``seed``) uses for the architecture at position ``arch_index`` of its
  grid; for the convex linear head the same optimum too.
  """
  train_x = jnp.asarray(train_x, jnp.float32)
  classes, y = np.unique(np.asarray(train_y), return_inverse=True)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), arch_index)
  dims = (train_x.shape[1], *tuple(hidden), len(classes))
  params0 = init_params(key, dims, zeros=not hidden, fan_in0=train_x.shape[1])
  fits = fit_batch(
    params0,
    train_x,
    y,
    np.ones((1, train_x.shape[0]), np.float32),
    np.array([alpha], np.float32),
    max_iter=max_iter,
    tol=tol,
  )
  return jax.tree.map(lambda leaf: leaf[0], fits['params']), classes


# --------------------------------------------------------------------------
# Metrics.


def rank_ap(scores, true_columns) -> np.ndarray:
  """1 / rank of the true column per row; rank = #columns scoring >= it.

  ``true_columns`` < 0 (class unknown to the head) gives AP 0.
  """
  scores = np.asarray(scores)
  cols = np.asarray(true_columns)
  known = cols >= 0
  true_score = scores[np.arange(len(cols)), np.maximum(cols, 0)]
  rank = np.sum(scores >= true_score[:, None], axis=1)
  return np.where(known, 1.0 / np.maximum(rank, 1), 0.0)


def classification_metrics(y_true, scores, classes) -> dict[str, Any]:
  """Accuracy, per-class precision/recall, confusion matrix, rank mAP.

  ``scores`` [T, C] (probabilities or any higher-is-better score) with
  columns ``classes``; prediction = first argmax.  ``labels`` = sorted union
  of ``classes`` and ``y_true``: rows/columns of ``confusion`` (rows true,
  columns predicted, as sklearn ``confusion_matrix``) and entries of
  ``precision``/``recall`` (0 where undefined, sklearn ``zero_division=0``).
  ``map``: rank AP averaged per true class, then over classes;
  ``map_per_sample``: plain mean.

  Test rows of a class absent from ``classes`` (no train row of it, e.g. a
  class whose only crops fell in the test part) cannot be predicted: they
  count as errors in ``accuracy``, get AP 0 (and so lower ``map``), and are
  reported as ``num_unseen`` (rows) and ``unseen_labels``.
  """
  y_true = np.asarray(y_true)
  scores = np.asarray(scores, np.float64)
  classes = np.asarray(classes)
  if scores.shape != (len(y_true), len(classes)):
    raise ValueError(
      f'scores {scores.shape} != ({len(y_true)}, {len(classes)})'
    )
  pred = classes[np.argmax(scores, axis=1)]
  labels = np.union1d(classes, y_true)
  ti = np.searchsorted(labels, y_true)
  pi = np.searchsorted(labels, pred)
  confusion = np.zeros((len(labels), len(labels)), np.int64)
  np.add.at(confusion, (ti, pi), 1)
  tp = np.diag(confusion).astype(np.float64)
  predicted, actual = confusion.sum(0), confusion.sum(1)
  precision = np.divide(
    tp, predicted, out=np.zeros_like(tp), where=predicted > 0
  )
  recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
  col = np.searchsorted(classes, y_true)
  col = np.where(
    (col < len(classes))
    & (classes[np.minimum(col, len(classes) - 1)] == y_true),
    col,
    -1,
  )
  ap = rank_ap(scores, col)
  _, true_ids = np.unique(y_true, return_inverse=True)
  per_class = np.bincount(true_ids, weights=ap) / np.bincount(true_ids)
  unseen = col < 0
  return {
    'num_unseen': int(unseen.sum()),
    'unseen_labels': np.unique(y_true[unseen]),
    'accuracy': float(np.mean(pred == y_true)) if len(y_true) else float('nan'),
    'map': float(per_class.mean()) if len(y_true) else float('nan'),
    'map_per_sample': float(ap.mean()) if len(y_true) else float('nan'),
    'top5': float(np.mean(ap >= 0.2 - 1e-12)) if len(y_true) else float('nan'),
    'labels': labels,
    'precision': precision,
    'recall': recall,
    'confusion': confusion,
    'predictions': pred,
    'ap': ap,
  }


# --------------------------------------------------------------------------
# scikit-learn SVC grid (the thesis's), for parity.


def sklearn_svc(
  train_x,
  train_y,
  test_x,
  test_y,
  folds=5,
  *,
  seed: int = 0,
  n_jobs: int | None = None,
  param_grid=SVC_GRID,
  progress: str | None = None,
) -> dict[str, Any]:
  """``GridSearchCV(SVC, thesis grid, cv=folds)``, refit with probabilities.

  The search scores accuracy, which ``SVC.predict`` gives from the decision
  function whether or not ``probability=True``, and libsvm fits the same
  model either way (``probability`` only adds Platt scaling fitted by an
  internal 5-fold CV), so the search runs with ``probability=False`` and only
  the refit of the winner with ``probability=True`` (6x fewer libsvm fits,
  same selection as ``GridSearchCV(SVC(probability=True))``).  ``folds`` is
  an int (StratifiedKFold as in ``stratified_folds``) or masks/a CV splitter.
  Metrics: accuracy from ``predict``; ``map`` (the thesis: predicted
  probabilities) from ``predict_proba``; ``map_decision`` from the one-vs-rest
  ``decision_function`` (consistent with ``predict``).  ``progress``: the
  description of a bar counting the search's fits (grid points x folds;
  None: no bar; with ``n_jobs`` the fits run elsewhere and it stays at 0).
  """
  # pylint: disable=g-import-not-at-top
  from sklearn.base import clone
  from sklearn.metrics import get_scorer
  from sklearn.model_selection import GridSearchCV
  from sklearn.model_selection import ParameterGrid
  from sklearn.svm import SVC

  start = time.perf_counter()
  train_y = np.asarray(train_y)
  if isinstance(folds, int):
    masks, info = stratified_folds(train_y, folds)
  elif isinstance(folds, np.ndarray):
    masks, info = folds.astype(bool), {'fold_method': 'given'}
  else:
    masks, info = None, {'fold_method': repr(folds)}
  cv = (
    [(np.flatnonzero(~m), np.flatnonzero(m)) for m in masks]
    if masks is not None
    else folds
  )
  accuracy = get_scorer('accuracy')
  num_folds = (
    len(cv) if isinstance(cv, list) else cv.get_n_splits(train_x, train_y)
  )
  with progress_lib.bar(
    progress or '',
    len(ParameterGrid(list(param_grid))) * num_folds,
    'fit',
    enabled=progress is not None,
  ) as bar:

    def scoring(estimator, x, y):  # The 'accuracy' scorer, counting fits.
      score = accuracy(estimator, x, y)
      bar.update(1)
      return score

    search = GridSearchCV(
      SVC(random_state=seed),
      list(param_grid),
      cv=cv,
      scoring=scoring,
      n_jobs=n_jobs,
      refit=False,
    )
    with warnings.catch_warnings():
      warnings.filterwarnings('ignore', message='The least populated class')
      search.fit(train_x, train_y)
  best = SVC(random_state=seed).set_params(**search.best_params_)
  if 'probability' in best.get_params():
    # Deprecated in sklearn 1.9 (removed in 1.11), kept for thesis parity.
    with warnings.catch_warnings():
      warnings.filterwarnings(
        'ignore', message='The `probability` parameter', category=FutureWarning
      )
      model = clone(best).set_params(probability=True).fit(train_x, train_y)
  else:  # sklearn >= 1.11: the replacement its deprecation message names
    from sklearn.calibration import CalibratedClassifierCV

    model = CalibratedClassifierCV(best, ensemble=False).fit(train_x, train_y)
  classes = model.classes_
  proba = classification_metrics(test_y, model.predict_proba(test_x), classes)
  fitted_svc = getattr(model, 'calibrated_classifiers_', None)
  fitted_svc = fitted_svc[0].estimator if fitted_svc else model
  decision = classification_metrics(
    test_y, fitted_svc.decision_function(test_x), classes
  )
  pred = fitted_svc.predict(test_x)
  out = dict(proba)
  out.update(
    {
      'accuracy': float(np.mean(pred == np.asarray(test_y))),
      'predictions': pred,
      'map_decision': decision['map'],
      'accuracy_proba_argmax': proba['accuracy'],
      'best': dict(search.best_params_),
      'cv_accuracy': float(search.best_score_),
      **info,
      'seconds': time.perf_counter() - start,
    }
  )
  return out


# --------------------------------------------------------------------------
# Top level.


def few_label_eval(
  embeddings,
  labels,
  origins=None,
  *,
  split: str = 'strict',
  seed: int = 0,
  heads: Sequence[str] = ('linear', 'mlp'),
  folds: int = 5,
  max_iter: int = MAX_ITER,
  tol: float = TOL,
  normalize: bool = True,
  reduce_rank: bool = True,
  mlp_hidden=None,
  mlp_alphas=None,
  linear_alphas=None,
  keep_details: bool = False,
  progress: bool = True,
) -> dict[str, Any]:
  """Split (``splits.py``), grid-searched heads, test metrics per head.

  ``split``: ``'strict'`` (origin split; needs ``origins``) or
  ``'standard'`` (random 80/20 with ``seed``).  ``heads``: any of
  ``'linear'``, ``'mlp'`` (jitted CV) and ``'svc'`` (scikit-learn, slow).
  ``progress``: a bar per head counting finished fits, and a log line with
  each head's time.
  Embeddings are L2-normalised first (``normalize``), as in the thesis.
  Returns ``{'split', 'num_train', 'num_test', 'num_classes', 'metrics':
  {'<split>/<head>/accuracy', '.../map', '.../cv_accuracy'}, '<head>':
  {'accuracy', 'map', 'map_per_sample', 'top5', 'cv_accuracy', 'best',
  'grid', 'confusion', 'labels', 'precision', 'recall', 'seconds', ...}}``;
  large per-sample arrays (test scores, AP, predictions) only with
  ``keep_details``.

  Classes with one crop: the strict split leaves them out (one photo); the
  standard split puts the crop in train or test.  Test rows whose class has
  no train row cannot be predicted: they count as errors (accuracy, AP 0)
  and are reported as ``num_test_unseen`` (and per head ``num_unseen``,
  ``unseen_labels``).  Raises ValueError for empty or non-finite embeddings
  and for labels/origins not of one entry per row.
  """
  x = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels)
  checks.check_matrix(x, 'embeddings')
  if labels.shape != (len(x),):
    raise ValueError(
      f'labels must be [{len(x)}] (embeddings rows), got shape {labels.shape}'
    )
  if origins is not None and np.shape(origins) != (len(x),):
    raise ValueError(
      f'origins must be [{len(x)}] (embeddings rows), got shape '
      f'{np.shape(origins)}'
    )
  checks.check_finite(x, 'embeddings')
  if split == 'strict':
    if origins is None:
      raise ValueError("split='strict' needs origins")
    train, test = splits_lib.strict_origin_split(labels, origins)
  elif split == 'standard':
    train, test = splits_lib.standard_split(labels, seed=seed)
  else:
    raise ValueError(f"unknown split {split!r}; valid: 'strict', 'standard'")
  if normalize:
    x = ops.l2_normalize(x)
  result: dict[str, Any] = {
    'split': split,
    'num_train': int(len(train)),
    'num_test': int(len(test)),
    'num_classes': int(len(np.unique(labels[train]))),
    'num_test_unseen': int(np.sum(~np.isin(labels[test], labels[train]))),
    'metrics': {},
  }
  if not len(test) or not len(train):
    return result
  bulky = ('ap', 'predictions', 'test_proba', 'all_test_proba')
  for head in heads:
    desc = f'{split}/{head} CV' if progress else None
    if head == 'svc':
      r = sklearn_svc(
        x[train],
        labels[train],
        x[test],
        labels[test],
        folds,
        seed=seed,
        progress=desc,
      )
    else:
      cv = cross_validate(
        x[train],
        labels[train],
        x[test],
        head=head,
        hidden_sizes=mlp_hidden,
        alphas=linear_alphas if head == 'linear' else mlp_alphas,
        folds=folds,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        reduce_rank=reduce_rank,
        progress=desc,
      )
      r = classification_metrics(labels[test], cv['test_proba'], cv['classes'])
      r.update({k: v for k, v in cv.items() if k != 'classes'})
    if progress:
      logging.info(
        'Few-label %s/%s head: %d train / %d test crops, CV accuracy %.4f, '
        'test accuracy %.4f, in %.1f s%s.',
        split,
        head,
        len(train),
        len(test),
        r['cv_accuracy'],
        r['accuracy'],
        r['seconds'],
        f' (L-BFGS iterations: mean {r["n_iter_mean"]:.0f}, max '
        f'{r["n_iter_max"]}, {r["num_capped"]} fits capped at {max_iter})'
        if 'n_iter_max' in r
        else '',
      )
    if not keep_details:
      r = {k: v for k, v in r.items() if k not in bulky}
    result[head] = r
    for name in ('accuracy', 'map', 'cv_accuracy'):
      result['metrics'][f'{split}/{head}/{name}'] = r[name]
  return result
