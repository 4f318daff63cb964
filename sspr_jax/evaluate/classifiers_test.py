"""Tests of the few-label heads; tiny problems, few compiles (~10 s each)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from sspr_jax.evaluate import classifiers

STEPS = 60


def _blobs(n, dim, num_classes, *, seed=0, spread=1.0, scale=1.5):
  rng = np.random.default_rng(seed)
  centres = scale * rng.normal(size=(num_classes, dim))
  y = np.repeat(np.arange(num_classes), n // num_classes)
  y = np.concatenate([y, rng.integers(0, num_classes, n - len(y))])
  rng.shuffle(y)
  x = centres[y] + spread * rng.normal(size=(n, dim))
  return x.astype(np.float32), y


@pytest.fixture(scope='module')
def problem():
  """60 train / 40 test rows, 4 classes (>= 5 per class), D = 8."""
  x, y = _blobs(100, 8, 4, seed=1, spread=1.5)
  return x[:60], y[:60] * 10 + 3, x[60:], y[60:] * 10 + 3  # arbitrary labels


def test_objective_is_sklearn_mlp_loss():
  from sklearn.neural_network import MLPClassifier

  x, y = _blobs(40, 5, 3, seed=2)
  mlp = MLPClassifier(
    hidden_layer_sizes=(7,),
    alpha=0.3,
    max_iter=5,
    solver='lbfgs',
    random_state=0,
  )
  with pytest.warns(Warning):  # ConvergenceWarning
    mlp.fit(x.astype(np.float64), y)
  params = [
    {'w': jnp.asarray(w, jnp.float32), 'b': jnp.asarray(b, jnp.float32)}
    for w, b in zip(mlp.coefs_, mlp.intercepts_)
  ]
  ours = classifiers.objective(
    params, jnp.asarray(x), jnp.asarray(y), jnp.ones(40), 0.3
  )
  np.testing.assert_allclose(float(ours), mlp.loss_, rtol=1e-5)


def test_linear_head_matches_logistic_regression():
  x, y = _blobs(300, 10, 5, seed=0)
  train, test = slice(0, 200), slice(200, None)
  alpha = 0.1
  params, classes = classifiers.fit_head(
    x[train], y[train], alpha=alpha, steps=100
  )
  lr = LogisticRegression(C=1 / alpha, max_iter=2000, tol=1e-10).fit(
    x[train].astype(np.float64), y[train]
  )
  sk = [
    {
      'w': jnp.asarray(lr.coef_.T, jnp.float32),
      'b': jnp.asarray(lr.intercept_, jnp.float32),
    }
  ]
  f = lambda p: float(
    classifiers.objective(
      p, jnp.asarray(x[train]), jnp.asarray(y[train]), jnp.ones(200), alpha
    )
  )
  # alpha = 1 / C: the same objective (divided by n), so the same optimum.
  assert f(params) <= f(sk) * (1 + 1e-4) + 1e-6
  ours_acc = np.mean(
    classes[np.argmax(classifiers.predict_proba(params, x[test]), 1)] == y[test]
  )
  assert abs(ours_acc - lr.score(x[test], y[test])) <= 0.02
  assert ours_acc > 0.8


def test_mlp_learns_xor():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
  y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
  params, classes = classifiers.fit_head(
    x, y, hidden=(16,), alpha=1e-3, steps=150
  )
  assert (
    np.mean(classes[np.argmax(classifiers.predict_proba(params, x), 1)] == y)
    > 0.95
  )
  # A linear head cannot.
  params, classes = classifiers.fit_head(x, y, alpha=1e-3, steps=STEPS)
  assert (
    np.mean(classes[np.argmax(classifiers.predict_proba(params, x), 1)] == y)
    < 0.75
  )


def test_adam_solver_learns():
  x, y = _blobs(100, 6, 3, seed=3, spread=0.5)
  params, classes = classifiers.fit_head(
    x, y, alpha=0.01, steps=150, solver='adam', learning_rate=0.05
  )
  assert (
    np.mean(classes[np.argmax(classifiers.predict_proba(params, x), 1)] == y)
    > 0.95
  )


def test_cv_picks_what_a_python_loop_picks(problem):
  train_x, train_y, test_x, _ = problem
  alphas = (0.01, 3.0, 30.0)
  cv = classifiers.cross_validate(
    train_x,
    train_y,
    test_x,
    head='linear',
    alphas=alphas,
    steps=STEPS,
    reduce_rank=False,
  )
  masks, info = classifiers.stratified_folds(
    np.unique(train_y, return_inverse=True)[1], 5
  )
  assert (
    info['fold_method'] == 'StratifiedKFold'
    and info['classes_below_folds'] == 0
  )
  classes, y = np.unique(train_y, return_inverse=True)
  fit = classifiers._jitted_fit(STEPS, 'lbfgs', 1e-2)  # pylint: disable=protected-access
  params0 = classifiers.init_params(jax.random.PRNGKey(0), (8, 4), zeros=True)
  loop = np.zeros((5, len(alphas)))
  for f, val in enumerate(masks):
    for g, alpha in enumerate(alphas):
      params, _ = fit(
        params0,
        jnp.asarray(train_x),
        jnp.asarray(y),
        jnp.asarray(~val, jnp.float32),
        jnp.float32(alpha),
      )
      pred = np.argmax(np.asarray(classifiers.logits_fn(params, train_x)), 1)
      loop[f, g] = np.mean(pred[val] == y[val])
  got = np.array([g['val_accuracy'] for g in cv['grid']]).T
  np.testing.assert_allclose(got, loop, atol=1e-6)
  assert cv['best_index'] == int(np.argmax(loop.mean(0)))
  assert cv['best']['alpha'] == alphas[cv['best_index']]
  assert len(set(np.round(loop.mean(0), 6))) > 1  # the grid matters here
  # A masked fold fits as the subset does (same objective).
  val = masks[0]
  sub, _ = classifiers.fit_head(
    train_x[~val], train_y[~val], alpha=alphas[1], steps=STEPS
  )
  full, _ = fit(
    params0,
    jnp.asarray(train_x),
    jnp.asarray(y),
    jnp.asarray(~val, jnp.float32),
    jnp.float32(alphas[1]),
  )
  np.testing.assert_allclose(
    classifiers.predict_proba(sub, train_x[val]),
    classifiers.predict_proba(full, train_x[val]),
    atol=1e-4,
  )
  # The refit of every grid point is fitted on ALL train rows.
  for g, alpha in enumerate(alphas):
    refit, _ = classifiers.fit_head(train_x, train_y, alpha=alpha, steps=STEPS)
    # alpha = 0.01 is not fully converged in STEPS: the masked and the subset
    # fit follow different rounding paths (~6e-3 apart on one row).
    np.testing.assert_allclose(
      cv['all_test_proba'][g],
      classifiers.predict_proba(refit, test_x),
      atol=1e-2 if alpha < 0.1 else 1e-3,
    )
  np.testing.assert_array_equal(
    cv['test_proba'], cv['all_test_proba'][cv['best_index']]
  )


def test_mlp_cv_is_deterministic_for_a_seed(problem):
  train_x, train_y, test_x, test_y = problem
  kw = dict(
    head='mlp', hidden_sizes=[(6,), (4, 3)], alphas=(0.1,), steps=STEPS, seed=3
  )
  cv = classifiers.cross_validate(train_x, train_y, test_x, **kw)
  assert [g['hidden'] for g in cv['grid']] == [(6,), (4, 3)]
  assert cv['final_loss'].shape == (6, 2) and np.all(
    np.isfinite(cv['final_loss'])
  )
  again = classifiers.cross_validate(train_x, train_y, test_x, **kw)
  np.testing.assert_array_equal(cv['test_proba'], again['test_proba'])
  assert cv['grid'] == again['grid']
  other = classifiers.cross_validate(
    train_x, train_y, test_x, **{**kw, 'seed': 4}
  )
  assert not np.allclose(cv['test_proba'], other['test_proba'])
  m = classifiers.classification_metrics(
    test_y, cv['test_proba'], cv['classes']
  )
  assert m['accuracy'] > 0.6


def test_classification_metrics_by_hand():
  classes = np.array([1, 2, 5])
  scores = np.array(
    [
      [0.6, 0.3, 0.1],  # true 1: rank 1
      [0.5, 0.2, 0.3],  # true 2: rank 3
      [0.4, 0.4, 0.2],  # true 2: tie with 1 -> rank 2
      [0.2, 0.3, 0.5],  # true 5: rank 1
      [0.1, 0.8, 0.1],
    ]
  )  # true 7: never trained -> AP 0
  y = np.array([1, 2, 2, 5, 7])
  m = classifiers.classification_metrics(y, scores, classes)
  np.testing.assert_allclose(m['ap'], [1, 1 / 3, 1 / 2, 1, 0])
  # Per class: 1 -> 1, 2 -> (1/3 + 1/2) / 2, 5 -> 1, 7 -> 0.
  assert m['map'] == pytest.approx((1 + 5 / 12 + 1 + 0) / 4)
  assert m['map_per_sample'] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1) / 5)
  np.testing.assert_array_equal(m['predictions'], [1, 1, 1, 5, 2])
  assert m['accuracy'] == pytest.approx(2 / 5)
  np.testing.assert_array_equal(m['labels'], [1, 2, 5, 7])
  expected = np.array([[1, 0, 0, 0], [2, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]])
  np.testing.assert_array_equal(m['confusion'], expected)
  assert m['top5'] == pytest.approx(4 / 5)


def test_classification_metrics_match_sklearn():
  rng = np.random.default_rng(0)
  classes = np.arange(0, 30, 3)
  y = rng.choice(np.append(classes, [31, 32]), size=200)
  scores = rng.random((200, len(classes)))
  m = classifiers.classification_metrics(y, scores, classes)
  pred = classes[scores.argmax(1)]
  np.testing.assert_array_equal(
    m['confusion'], confusion_matrix(y, pred, labels=m['labels'])
  )
  p, r, _, _ = precision_recall_fscore_support(
    y, pred, labels=m['labels'], zero_division=0
  )
  np.testing.assert_allclose(m['precision'], p)
  np.testing.assert_allclose(m['recall'], r)
  # Rank AP == sklearn average_precision_score with the true class as the one positive.
  from sklearn.metrics import average_precision_score

  for i in range(20):
    if y[i] in classes:
      expected = average_precision_score(classes == y[i], scores[i])
      assert m['ap'][i] == pytest.approx(expected)


def test_folds_fallback_and_small_classes():
  y = np.array([0, 0, 0, 0, 0, 1, 2, 2])
  masks, info = classifiers.stratified_folds(y, 5)
  assert info == {'classes_below_folds': 2, 'fold_method': 'StratifiedKFold'}
  assert masks.sum() == len(y) and np.all(masks.sum(0) == 1)
  # Every class < 5.
  masks, info = classifiers.stratified_folds(np.arange(8) % 4, 5)
  assert info['fold_method'] == 'KFold' and np.all(masks.sum(0) == 1)
  with pytest.raises(ValueError):
    classifiers.stratified_folds([0, 1, 2], 5)


def test_sklearn_svc_runs():
  x, y = _blobs(80, 6, 4, seed=5, spread=0.7)
  grid = ({'kernel': ['linear', 'rbf'], 'C': [0.1, 1]},)
  r = classifiers.sklearn_svc(
    x[:60], y[:60], x[60:], y[60:], 5, param_grid=grid
  )
  assert (
    r['accuracy'] > 0.8 and 0 < r['map'] <= 1 and 0 < r['map_decision'] <= 1
  )
  assert r['best']['kernel'] in ('linear', 'rbf')
  assert r['confusion'].sum() == 20


def test_few_label_eval_strict_split_and_rank_reduction():
  x, y = _blobs(120, 100, 6, seed=6, spread=3.0)
  origins = np.arange(120) % 4  # 4 photos
  r = classifiers.few_label_eval(
    x,
    y,
    origins,
    heads=('linear',),
    steps=STEPS,
    linear_alphas=(0.01, 0.1),
    keep_details=True,
  )
  assert r['num_train'] + r['num_test'] == 120 and 0 < r['num_train'] < 100
  lin = r['linear']
  assert set(r['metrics']) == {
    'strict/linear/accuracy',
    'strict/linear/map',
    'strict/linear/cv_accuracy',
  }
  assert (
    lin['accuracy'] > 0.6 and lin['map_per_sample'] >= lin['accuracy'] - 1e-9
  )
  assert lin['best']['alpha'] in (0.01, 0.1)
  # n_train < D: trained in the train rows' span; exact for the linear head.
  from sspr_jax.evaluate import splits

  train, test = splits.strict_origin_split(y, origins)
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  full = classifiers.cross_validate(
    xn[train],
    y[train],
    xn[test],
    head='linear',
    alphas=(0.01, 0.1),
    steps=STEPS,
    reduce_rank=False,
  )
  np.testing.assert_allclose(lin['test_proba'], full['test_proba'], atol=2e-3)
  assert lin['best'] == full['best']
  assert (
    'test_proba'
    not in classifiers.few_label_eval(
      x, y, origins, heads=('linear',), steps=STEPS, linear_alphas=(0.01, 0.1)
    )['linear']
  )
  with pytest.raises(ValueError):
    classifiers.few_label_eval(x, y, split='strict')


def _record_bars(monkeypatch) -> list:
  """The tqdm bars `progress.bar` makes from now on (closed ones keep n)."""
  from sspr_jax.evaluate import progress  # pylint: disable=g-import-not-at-top

  bars = []

  class Bar(progress.tqdm.tqdm):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      bars.append(self)

  monkeypatch.setattr(progress.tqdm, 'tqdm', Bar)
  return bars


def test_few_label_bar_counts_finished_architectures(monkeypatch, caplog):
  from sspr_jax.core import ops  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import splits  # pylint: disable=g-import-not-at-top

  bars, finished = _record_bars(monkeypatch), []
  x, y = _blobs(100, 8, 4, seed=1, spread=1.5)
  kw = dict(mlp_hidden=[(6,), (4, 3)], mlp_alphas=(0.1,), steps=STEPS)
  with caplog.at_level('INFO'), classifiers._listening(finished.append):
    r = classifiers.few_label_eval(
      x, y, split='standard', heads=('mlp',), keep_details=True, **kw
    )
  assert finished == [0, 1]  # Reported one by one, in grid order.
  (bar,) = bars
  assert bar.desc.startswith('standard/mlp') and bar.n == bar.total == 2
  assert 'Few-label standard/mlp head' in caplog.text
  # The same numbers as without a bar.
  train, test = splits.standard_split(y, seed=0)
  xn = ops.l2_normalize(x)
  plain = classifiers.cross_validate(
    xn[train],
    y[train],
    xn[test],
    head='mlp',
    hidden_sizes=kw['mlp_hidden'],
    alphas=kw['mlp_alphas'],
    steps=STEPS,
  )
  np.testing.assert_array_equal(r['mlp']['test_proba'], plain['test_proba'])
  assert r['mlp']['grid'] == plain['grid']


def test_svc_bar_counts_fits(monkeypatch):
  bars = _record_bars(monkeypatch)
  x, y = _blobs(80, 6, 4, seed=5, spread=0.7)
  grid = ({'kernel': ['linear', 'rbf'], 'C': [0.1, 1]},)
  args = (x[:60], y[:60], x[60:], y[60:], 5)
  r = classifiers.sklearn_svc(*args, param_grid=grid, progress='svc')
  (bar,) = bars
  assert bar.n == bar.total == 4 * 5  # grid points x folds
  plain = classifiers.sklearn_svc(*args, param_grid=grid)
  for key in ('best', 'cv_accuracy', 'accuracy', 'map'):
    assert r[key] == plain[key]
