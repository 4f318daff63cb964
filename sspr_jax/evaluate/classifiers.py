"""Few-label classifier heads on frozen embeddings (REFERENCE.md, "Classifiers").

The thesis ran scikit-learn 5-fold stratified grid searches on L2-normalised
embeddings (MLPClassifier with L-BFGS; SVC) and reported accuracy, the
confusion matrix and a "1/rank" mAP.  This module does the MLP part (plus a
multinomial logistic head) as ONE jitted XLA program per head, and keeps the
SVC grid in scikit-learn for parity.

Heads (float32, full batch, a fixed number of iterations):

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
objective divided by ``n_samples``.  Solvers: ``optax.lbfgs`` with a
backtracking line search (``'lbfgs'``, the default: cheapest under vmap) or
the strong-Wolfe zoom search (``'lbfgs_zoom'``), or ``optax.adam``.  sklearn stops L-BFGS at ``tol`` or
200 iterations; here every problem runs ``steps`` iterations (default 200).

Cross-validation as one program: the folds are 0/1 masks over the train
rows, so every fold has the same shapes and ``vmap`` runs folds x alphas
together; architectures (hidden sizes) are a static Python loop inside the
same ``jit``.  The refit on the whole train part is an extra "fold" whose
mask is all ones, fitted for every grid point in the same program; the grid
point with the best mean validation accuracy (ties: the first in grid order,
as ``GridSearchCV``) is then selected and its refit is evaluated on the test
part.  Refitting every grid point costs about 1/folds more compute than
refitting only the winner, and saves a second compile and a serial fit.
Between architectures a host callback reports the finished one (the
progress bar of ``cross_validate(progress=...)``) and hands the next one its
key, so they run in grid order and the count moves while the program runs;
one program compiles in about 2/3 of the time of one per architecture.

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

import contextlib
import functools
import logging
import threading
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import io_callback
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
SOLVERS = ('lbfgs', 'lbfgs_zoom', 'adam')

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


def fit(
  params: Params,
  x,
  y,
  weights,
  alpha,
  *,
  steps: int = 200,
  solver: str = 'lbfgs',
  learning_rate: float = 1e-2,
  memory_size: int = 10,
) -> tuple[Params, jax.Array]:
  """Minimise ``objective`` from ``params`` for ``steps`` iterations.

  Pure and traceable: ``vmap`` it over weights/alpha.  Returns the params and
  the objective value per iteration (before the step).  An L-BFGS step that
  produces non-finite values is dropped (the params stay).
  """
  if solver not in SOLVERS:
    raise ValueError(f'unknown solver {solver!r}; valid: {SOLVERS}')
  fun = lambda p: objective(p, x, y, weights, alpha)  # pylint: disable=unnecessary-lambda-assignment
  if solver == 'adam':
    opt = optax.adam(learning_rate)

    def adam_step(carry, _):
      p, state = carry
      value, grad = jax.value_and_grad(fun)(p)
      updates, state = opt.update(grad, state, p)
      return (optax.apply_updates(p, updates), state), value

    (params, _), values = jax.lax.scan(
      adam_step, (params, opt.init(params)), None, length=steps
    )
    return params, values

  if solver == 'lbfgs_zoom':  # Strong-Wolfe line search.
    linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=20)
  else:
    # Backtracking (Armijo): the first trial is min(2 x the last accepted
    # step, 1), halved until accepted. Under vmap every line-search
    # iteration evaluates all problems until the slowest accepts, and the
    # zoom search's branches are all computed: 100 vs 165 ms per iteration
    # for the 12 fits of one architecture, same final objective (+0.5 %).
    # (Never increasing the step was 74 ms but stalled some fits.)
    linesearch = optax.scale_by_backtracking_linesearch(
      max_backtracking_steps=15,
      increase_factor=2.0,
      decrease_factor=0.5,
      store_grad=True,
    )
  opt = optax.lbfgs(memory_size=memory_size, linesearch=linesearch)

  # Both line searches store the value and gradient of the accepted point in
  # the state, so each iteration needs only the line search's evaluations.
  # (optax.value_and_grad_from_state reads them too, but through lax.cond,
  # which vmap turns into computing both branches: one extra evaluation.)
  def lbfgs_step(carry, _):
    p, state, value, grad = carry
    updates, new_state = opt.update(
      grad, state, p, value=value, grad=grad, value_fn=fun
    )
    new_p = optax.apply_updates(p, updates)
    new_value = optax.tree.get(new_state, 'value')
    new_grad = optax.tree.get(new_state, 'grad')
    ok = _all_finite((new_p, new_value, new_grad))
    keep = lambda a, b: jax.tree.map(lambda u, v: jnp.where(ok, u, v), a, b)  # pylint: disable=unnecessary-lambda-assignment
    return (
      keep(new_p, p),
      keep(new_state, state),
      jnp.where(ok, new_value, value),
      keep(new_grad, grad),
    ), value

  value, grad = jax.value_and_grad(fun)(params)
  (params, _, _, _), values = jax.lax.scan(
    lbfgs_step, (params, opt.init(params), value, grad), None, length=steps
  )
  return params, values


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


def _arch_program(
  key,
  x,
  y,
  train_masks,
  val_masks,
  alphas,
  test_x,
  *,
  hidden,
  num_classes,
  fan_in0,
  steps,
  solver,
  learning_rate,
):
  """Fits [folds + 1, len(alphas)] problems of one architecture."""
  dims = (x.shape[1], *hidden, num_classes)
  params0 = init_params(key, dims, zeros=not hidden, fan_in0=fan_in0)

  def one(weights, alpha):
    params, values = fit(
      params0,
      x,
      y,
      weights,
      alpha,
      steps=steps,
      solver=solver,
      learning_rate=learning_rate,
    )
    correct = (jnp.argmax(logits_fn(params, x), axis=-1) == y).astype(
      jnp.float32
    )
    return params, values[-1], correct

  grid_fit = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))
  params, final_loss, correct = grid_fit(train_masks, alphas)
  num_folds = val_masks.shape[0]
  val = val_masks.astype(jnp.float32)
  val_acc = (
    jnp.sum(correct[:num_folds] * val[:, None, :], axis=-1)
    / jnp.maximum(jnp.sum(val, axis=-1), 1.0)[:, None]
  )  # [F, G]
  refit = jax.tree.map(lambda leaf: leaf[num_folds], params)  # [G, ...]
  test_proba = jax.vmap(predict_proba, in_axes=(0, None))(refit, test_x)
  return val_acc, test_proba, final_loss, refit


# Listeners of `_cv_program`'s finished architectures (the running
# `cross_validate`'s bar): the compiled program calls `_arch_finished` on a
# runtime thread, so it reaches whoever listens now, not whoever traced it.
_ARCH_LISTENERS: list[Callable[[int], None]] = []
_LISTENERS_LOCK = threading.Lock()


def _arch_finished(index: int, _, key):
  with _LISTENERS_LOCK:
    listeners = list(_ARCH_LISTENERS)
  for listener in listeners:
    listener(index)
  return key


@contextlib.contextmanager
def _listening(listener: Callable[[int], None]):
  with _LISTENERS_LOCK:
    _ARCH_LISTENERS.append(listener)
  try:
    yield
  finally:
    with _LISTENERS_LOCK:
      _ARCH_LISTENERS.remove(listener)


@functools.partial(
  jax.jit,
  static_argnames=(
    'archs',
    'num_classes',
    'fan_in0',
    'steps',
    'solver',
    'learning_rate',
  ),
)
def _cv_program(
  key,
  x,
  y,
  val_masks,
  alphas,
  test_x,
  *,
  archs,
  num_classes,
  fan_in0,
  steps,
  solver,
  learning_rate,
):
  """All architectures x folds x alphas + refits; picks the best grid point."""
  train_masks = jnp.concatenate(
    [~val_masks, jnp.ones((1, x.shape[0]), bool)]
  ).astype(jnp.float32)
  val_accs, probas, losses = [], [], []
  for i, hidden in enumerate(archs):
    val_acc, proba, loss, _ = _arch_program(
      jax.random.fold_in(key, i),
      x,
      y,
      train_masks,
      val_masks,
      alphas[i],
      test_x,
      hidden=hidden,
      num_classes=num_classes,
      fan_in0=fan_in0,
      steps=steps,
      solver=solver,
      learning_rate=learning_rate,
    )
    # Tells the host that architecture i is done (`_arch_finished`), and
    # only then starts the next one: its key passes through the callback,
    # which waits for `val_acc`, i.e. for every fit of architecture i. So
    # the count advances as the program runs, not all at its end (XLA may
    # otherwise run an unordered callback last), with one compile.
    key = io_callback(
      functools.partial(_arch_finished, i),
      jax.ShapeDtypeStruct(key.shape, key.dtype),
      val_acc,
      key,
    )
    val_accs.append(val_acc)
    probas.append(proba)
    losses.append(loss)
  val_acc = jnp.concatenate(val_accs, axis=1)  # [F, total grid]
  mean_acc = jnp.mean(val_acc, axis=0)
  best = jnp.argmax(mean_acc)  # first of ties, as GridSearchCV
  proba = jnp.concatenate(probas)  # [total grid, T, C]
  loss = jnp.concatenate(losses, axis=1)  # [F + 1, total grid]
  return {
    'val_accuracy': val_acc,
    'mean_val_accuracy': mean_acc,
    'best': best,
    'test_proba': proba[best],
    'all_test_proba': proba,
    'final_loss': loss,
  }


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


def rank_reduce(train_x, test_x) -> tuple[np.ndarray, np.ndarray]:
  """Coordinates in the train rows' span: ``(x_train V, x_test V)``, float32.

  Exact for L2-penalised heads (module docstring); only when n < dim.
  """
  train_x = np.asarray(train_x, np.float64)
  _, _, vt = np.linalg.svd(train_x, full_matrices=False)
  v = vt.T
  return (
    (train_x @ v).astype(np.float32),
    (np.asarray(test_x, np.float64) @ v).astype(np.float32),
  )


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
  steps: int = 200,
  solver: str = 'lbfgs',
  learning_rate: float = 1e-2,
  reduce_rank: bool = True,
  val_masks=None,
  progress: str | None = None,
) -> dict[str, Any]:
  """Grid search (folds x grid, one jitted program), refit, test scores.

  ``train_y`` may be any labels; columns of the scores follow
  ``classes = np.unique(train_y)``.  ``val_masks`` ([folds, n_train] bool)
  overrides the folds.  Returns ``classes``, ``test_proba`` [T, C] of the
  selected grid point's refit, ``best`` ({'hidden', 'alpha'}), ``grid`` (list
  of {'hidden', 'alpha', 'mean_val_accuracy', 'val_accuracy'}),
  ``cv_accuracy`` (the best mean validation accuracy), the fold info and
  ``seconds`` (wall time incl. compile, ``compile_seconds``).  ``progress``: the description of
  a bar counting the architectures whose fits have finished (None: no bar).
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
  classes, y = np.unique(np.asarray(train_y), return_inverse=True)
  if val_masks is None:
    val_masks, info = stratified_folds(y, folds, shuffle=shuffle, seed=seed)
  else:
    val_masks = np.asarray(val_masks, bool)
    info = {'fold_method': 'given', 'classes_below_folds': None}
  archs, alpha_sets = _grid(head, hidden_sizes, alphas)
  dim = train_x.shape[1]
  if reduce_rank and train_x.shape[0] < dim:
    train_x, test_x = rank_reduce(train_x, test_x)
  with (
    progress_lib.bar(
      progress or '', len(archs), 'arch', enabled=progress is not None
    ) as bar,
    _listening(lambda _: bar.update(1)),
  ):
    args = (
      jax.random.PRNGKey(seed),
      jnp.asarray(train_x),
      jnp.asarray(y, jnp.int32),
      jnp.asarray(val_masks),
      tuple(jnp.asarray(a, jnp.float32) for a in alpha_sets),
      jnp.asarray(test_x),
    )
    bar.set_postfix_str('compiling')
    compile_start = time.perf_counter()
    # Compiled once per shapes and settings (jit's cache holds it).
    program = _cv_program.lower(
      *args,
      archs=archs,
      num_classes=len(classes),
      fan_in0=dim,
      steps=steps,
      solver=solver,
      learning_rate=learning_rate,
    ).compile()
    compile_seconds = time.perf_counter() - compile_start
    bar.reset()  # The rate and ETA count the fits only.
    bar.set_postfix_str('fitting')
    out = program(*args)
    out = jax.device_get(out)
  grid = [
    {'hidden': h, 'alpha': float(a)}
    for h, alist in zip(archs, alpha_sets)
    for a in alist
  ]
  for g, mean, accs in zip(
    grid, out['mean_val_accuracy'], out['val_accuracy'].T
  ):
    g['mean_val_accuracy'] = float(mean)
    g['val_accuracy'] = [float(v) for v in accs]
  best = int(out['best'])
  return {
    'classes': classes,
    'test_proba': np.asarray(out['test_proba']),
    'all_test_proba': np.asarray(out['all_test_proba']),
    'best': {'hidden': grid[best]['hidden'], 'alpha': grid[best]['alpha']},
    'best_index': best,
    'cv_accuracy': grid[best]['mean_val_accuracy'],
    'grid': grid,
    'final_loss': np.asarray(out['final_loss']),
    'num_folds': int(val_masks.shape[0]),
    **info,
    'seconds': time.perf_counter() - start,
    'compile_seconds': compile_seconds,
  }


def fit_head(
  train_x,
  train_y,
  *,
  hidden=(),
  alpha: float = 0.01,
  seed: int = 0,
  arch_index: int = 0,
  steps: int = 200,
  solver: str = 'lbfgs',
  learning_rate: float = 1e-2,
) -> tuple[Params, np.ndarray]:
  """One head on all of ``train_x`` (no CV, no rank reduction): params, classes.

  Same start as ``cross_validate`` (same ``seed``, ``reduce_rank=False``)
  uses for the architecture at position ``arch_index`` of its grid.
  """
  train_x = jnp.asarray(train_x, jnp.float32)
  classes, y = np.unique(np.asarray(train_y), return_inverse=True)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), arch_index)
  dims = (train_x.shape[1], *tuple(hidden), len(classes))
  params0 = init_params(key, dims, zeros=not hidden, fan_in0=train_x.shape[1])
  params, _ = _jitted_fit(steps, solver, learning_rate)(
    params0,
    train_x,
    jnp.asarray(y, jnp.int32),
    jnp.ones(train_x.shape[0], jnp.float32),
    jnp.float32(alpha),
  )
  return params, classes


@functools.lru_cache(maxsize=16)
def _jitted_fit(steps: int, solver: str, learning_rate: float):
  return jax.jit(
    functools.partial(
      fit, steps=steps, solver=solver, learning_rate=learning_rate
    )
  )


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
  steps: int = 200,
  solver: str = 'lbfgs',
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
        steps=steps,
        solver=solver,
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
        f' ({r["compile_seconds"]:.1f} s compiling)'
        if 'compile_seconds' in r
        else '',
      )
    if not keep_details:
      r = {k: v for k, v in r.items() if k not in bulky}
    result[head] = r
    for name in ('accuracy', 'map', 'cv_accuracy'):
      result['metrics'][f'{split}/{head}/{name}'] = r[name]
  return result
