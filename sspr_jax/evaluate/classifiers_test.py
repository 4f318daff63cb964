"""Tests of the few-label heads; tiny problems, few compiles (~10 s each)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from sspr_jax.evaluate import classifiers

STEPS = 60  # An iteration cap where a test does not need convergence.


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
  # A tighter tol than sklearn's MLP default, to compare optima.
  params, classes = classifiers.fit_head(
    x[train], y[train], alpha=alpha, tol=1e-6
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
  params, classes = classifiers.fit_head(x, y, hidden=(16,), alpha=1e-3)
  assert (
    np.mean(classes[np.argmax(classifiers.predict_proba(params, x), 1)] == y)
    > 0.95
  )
  # A linear head cannot.
  params, classes = classifiers.fit_head(x, y, alpha=1e-3)
  assert (
    np.mean(classes[np.argmax(classifiers.predict_proba(params, x), 1)] == y)
    < 0.75
  )


def test_fit_stops_by_sklearns_rule(monkeypatch):
  x, y = _blobs(120, 6, 3, seed=3, spread=0.8)
  args = (jnp.asarray(x), jnp.asarray(y), jnp.ones(120), jnp.float32(0.01))
  params0 = classifiers.init_params(jax.random.PRNGKey(0), (6, 5, 3))
  fit = jax.jit(classifiers.fit, static_argnames=('max_iter',))
  _, done = fit(params0, *args)
  grad = jax.grad(classifiers.objective)(jax.device_get(done.params), *args)
  assert bool(done.converged) and 0 < int(done.n_iter) < classifiers.MAX_ITER
  # Stopped by the gradient test or because the objective stopped falling.
  assert float(classifiers._max_abs(grad)) <= classifiers.TOL or int(
    done.n_iter
  ) == int(fit(params0, *args, max_iter=int(done.n_iter))[1].n_iter)
  capped = fit(params0, *args, max_iter=5)[1]
  assert int(capped.n_iter) == 5 and not bool(capped.converged)
  assert float(capped.value) > float(done.value)
  # fit_batch pauses every `chunk` iterations (and may drop finished fits
  # from the batch): the same fits as one uninterrupted run of each.
  weights = np.ones((3, 120), np.float32)
  weights[1, :40] = 0
  alphas = np.array([0.01, 0.01, 10.0], np.float32)
  calls = []
  batch = classifiers.fit_batch(
    params0,
    x,
    y,
    weights,
    alphas,
    chunk=7,
    on_chunk=lambda n, it: calls.append((n, it)),
  )
  assert sum(n for n, _ in calls) == 3 and batch['converged'].all()
  for b in range(3):
    # Where the objective flattens, rounding decides the last iterations: a
    # lone fit and a batched one stop at about the same point.
    _, one = fit(params0, args[0], args[1], weights[b], alphas[b])
    np.testing.assert_allclose(float(one.value), batch['value'][b], rtol=1e-4)
    assert bool(one.converged)
  # They stop at different iterations, each counted when it stops.
  assert len(set(batch['n_iter'])) == 3 and len(calls) >= 2
  # Dropping the stopped fits from the batch changes none of them.
  monkeypatch.setattr(classifiers, '_worth_dropping', lambda *_: True)
  dropped = classifiers.fit_batch(params0, x, y, weights, alphas, chunk=7)
  np.testing.assert_allclose(dropped['value'], batch['value'], rtol=1e-4)
  np.testing.assert_array_equal(dropped['converged'], batch['converged'])


def test_line_search_accepts_armijo_step_with_its_gradient():
  x, y = _blobs(60, 4, 3, seed=4)
  # Mostly penalty, from small weights: the first trial (a unit step along
  # the normalised gradient) overshoots the minimum and is halved.
  args = (jnp.asarray(x), jnp.asarray(y), jnp.ones(60), jnp.float32(1e3))
  params0 = jax.tree.map(
    lambda leaf: 0.05 * leaf,
    classifiers.init_params(jax.random.PRNGKey(1), (4, 5, 3)),
  )
  f0 = classifiers.start_fit(params0, *args)
  step = jax.jit(classifiers.evaluate_fit)
  f = step(f0, *args)
  evaluations = 1
  while int(f.n_iter) == 0:
    f = step(f, *args)
    evaluations += 1
  assert evaluations > 1 and int(f.n_eval) == 1 + evaluations  # + the start
  # Accepted at the last trial's step, with Armijo's sufficient decrease.
  t = float(f.last_step)
  assert t == 0.5 ** (evaluations - 1)
  expected = jax.tree.map(lambda p, d: p + t * d, params0, f.direction)
  for got, want in zip(jax.tree.leaves(f.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert float(f.slope) < 0
  assert float(f.value) <= float(f0.value) + classifiers.ARMIJO * t * float(
    f.slope
  )
  # The stored value and gradient are the accepted point's.
  value, grad = jax.value_and_grad(classifiers.objective)(f.params, *args)
  np.testing.assert_allclose(float(f.value), float(value), rtol=1e-6)
  for got, want in zip(jax.tree.leaves(f.grad), jax.tree.leaves(grad)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def _sklearn_like(kind, *, n=400, dim=64, num_classes=20, seed=0):
  """L2-normalised features: 'clustered' (separated classes, with overlap)
  or 'random_init' (a shared direction dominates: pairwise cosines ~0.99,
  as a random-init backbone's)."""
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(n) % num_classes)
  centres = rng.normal(size=(num_classes, dim))
  if kind == 'clustered':
    x = centres[y] + 2.0 * rng.normal(size=(n, dim))
  else:
    common = np.abs(rng.normal(size=dim)) + 1.0
    x = common + 0.04 * centres[y] + 0.06 * rng.normal(size=(n, dim))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x.astype(np.float32), y


@pytest.mark.parametrize('kind', ['clustered', 'random_init'])
def test_mlp_at_convergence_matches_sklearn(kind):
  """MLPClassifier(max_iter=10_000) from the same starts, on 4 starts.

  alpha 0.1: mean test accuracy within 2 points. alpha 0.01 on
  random-init-like features has many minima: one fit's accuracy moves by
  ~13 points (standard deviation over starts, either side; scikit-learn
  with 1 or 2 BLAS threads moved one fit by 23), so there the test asks
  for minima as low as scikit-learn's.
  """
  import warnings  # pylint: disable=g-import-not-at-top

  from sklearn.neural_network import MLPClassifier  # pylint: disable=g-import-not-at-top
  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top

  x, y = _sklearn_like(kind)
  cos = (x @ x.T)[np.triu_indices(len(x), 1)]
  assert (np.median(cos) > 0.98) == (kind == 'random_init')
  train = np.arange(len(x)) < 300
  alphas = (0.01, 0.1)
  accuracy, value = np.zeros((2, 4, 2)), np.zeros((2, 4, 2))  # side, seed, a
  for seed in range(4):
    # What cross_validate fits (n_train > dim: no rank reduction).
    params0 = classifiers.init_params(jax.random.PRNGKey(seed), (64, 32, 20))
    fits = classifiers.fit_batch(
      params0, x[train], y[train], np.ones((2, 300), np.float32), alphas
    )
    assert fits['converged'].all()
    for g, alpha in enumerate(alphas):
      params = jax.tree.map(lambda leaf, g=g: leaf[g], fits['params'])
      pred = np.argmax(classifiers.predict_proba(params, x[~train]), axis=1)
      accuracy[0, seed, g] = np.mean(pred == y[~train])
      value[0, seed, g] = fits['value'][g]
      mlp = MLPClassifier(
        (32,), alpha=alpha, solver='lbfgs', max_iter=10_000, random_state=0
      )
      layers = iter([(np.float64(p['w']), np.float64(p['b'])) for p in params0])
      mlp._init_coef = lambda *_, layers=layers: next(layers)  # Our start.
      # One BLAS thread: 10x faster for these small matrices on 2 cores.
      with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter('error')  # No ConvergenceWarning: converged.
        mlp.fit(x[train], y[train])
      accuracy[1, seed, g] = mlp.score(x[~train], y[~train])
      value[1, seed, g] = mlp.loss_
  mean_accuracy, mean_value = accuracy.mean(1), value.mean(1)
  assert abs(mean_accuracy[0, 1] - mean_accuracy[1, 1]) <= 0.02, accuracy
  assert np.all(mean_value[0] <= mean_value[1] * 1.02), value
  if kind == 'clustered':  # One minimum: both alphas agree.
    assert abs(mean_accuracy[0, 0] - mean_accuracy[1, 0]) <= 0.02, accuracy
  # Features a head can learn from, above chance (1/20) by far, and not
  # trivially (a test that all heads pass says nothing).
  assert 0.3 < mean_accuracy[1].min() and mean_accuracy[1].max() < 0.99


def test_cv_picks_what_a_python_loop_picks(problem):
  train_x, train_y, test_x, _ = problem
  alphas = (0.01, 3.0, 30.0)
  cv = classifiers.cross_validate(
    train_x,
    train_y,
    test_x,
    head='linear',
    alphas=alphas,
    reduce_rank=False,
    refit='all',
  )
  masks, info = classifiers.stratified_folds(
    np.unique(train_y, return_inverse=True)[1], 5
  )
  assert (
    info['fold_method'] == 'StratifiedKFold'
    and info['classes_below_folds'] == 0
  )
  classes, y = np.unique(train_y, return_inverse=True)
  fit = jax.jit(classifiers.fit)
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
  sub, _ = classifiers.fit_head(train_x[~val], train_y[~val], alpha=alphas[1])
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
    atol=1e-3,
  )
  # The refit of every grid point is fitted on ALL train rows.
  for g, alpha in enumerate(alphas):
    refit, _ = classifiers.fit_head(train_x, train_y, alpha=alpha)
    np.testing.assert_allclose(
      cv['all_test_proba'][g],
      classifiers.predict_proba(refit, test_x),
      atol=2e-3,
    )
  np.testing.assert_array_equal(
    cv['test_proba'], cv['all_test_proba'][cv['best_index']]
  )
  # GridSearchCV's refit: only the selected point, the same fit.
  best = classifiers.cross_validate(
    train_x, train_y, test_x, head='linear', alphas=alphas, reduce_rank=False
  )
  assert 'all_test_proba' not in best
  # Same fold fits: the batches differ in size (refits), and batched matmuls
  # of another size round differently, which can move a stop by an
  # iteration (seen on one CPU, not another).
  for a, b in zip(best['grid'], cv['grid']):
    assert a['val_accuracy'] == b['val_accuracy']
    np.testing.assert_allclose(a['n_iter'], b['n_iter'], atol=2)
  assert best['best_index'] == cv['best_index']
  assert [r['index'] for r in best['refits']] == [cv['best_index']]
  np.testing.assert_allclose(best['test_proba'], cv['test_proba'], atol=1e-3)


def test_mlp_cv_is_deterministic_for_a_seed(problem):
  train_x, train_y, test_x, test_y = problem
  kw = dict(
    head='mlp',
    hidden_sizes=[(6,), (4, 3)],
    alphas=(0.1,),
    max_iter=STEPS,
    seed=3,
  )
  cv = classifiers.cross_validate(train_x, train_y, test_x, **kw)
  assert [g['hidden'] for g in cv['grid']] == [(6,), (4, 3)]
  assert all(len(g['n_iter']) == 5 for g in cv['grid'])  # 5 folds
  assert len(cv['refits']) == 1 and len(cv['fit_iterations']) == 11
  assert 0 < cv['n_iter_max'] <= STEPS
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
    linear_alphas=(0.01, 0.1),
    tol=1e-6,  # Optima to compare, not sklearn's stopping point.
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
  # n_train < D: trained centred in the train rows' span; exact for the
  # linear head.
  from sspr_jax.evaluate import splits

  train, test = splits.strict_origin_split(y, origins)
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  full = classifiers.cross_validate(
    xn[train],
    y[train],
    xn[test],
    head='linear',
    alphas=(0.01, 0.1),
    tol=1e-6,
    center=False,
    reduce_rank=False,
  )
  np.testing.assert_allclose(lin['test_proba'], full['test_proba'], atol=2e-3)
  assert lin['best'] == full['best']
  assert (
    'test_proba'
    not in classifiers.few_label_eval(
      x, y, origins, heads=('linear',), linear_alphas=(0.01, 0.1)
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


def test_few_label_bar_counts_finished_fits(monkeypatch, caplog):
  from sspr_jax.core import ops  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import splits  # pylint: disable=g-import-not-at-top

  bars, counts = _record_bars(monkeypatch), []
  real_fit_batch = classifiers.fit_batch

  def fit_batch(*args, on_chunk, **kwargs):
    def count(n, iteration):
      counts.append((bars[0].n, n, iteration))
      on_chunk(n, iteration)

    return real_fit_batch(*args, on_chunk=count, chunk=5, **kwargs)

  monkeypatch.setattr(classifiers, 'fit_batch', fit_batch)
  x, y = _blobs(100, 8, 4, seed=1, spread=1.5)
  kw = dict(mlp_hidden=[(6,), (4, 3)], mlp_alphas=(0.1, 1.0))
  with caplog.at_level('INFO'):
    r = classifiers.few_label_eval(
      x, y, split='standard', heads=('mlp',), keep_details=True, **kw
    )
  (bar,) = bars
  # 2 architectures x 5 folds x 2 alphas + the refit, counted as they end.
  assert bar.desc.startswith('standard/mlp') and bar.n == bar.total == 21
  assert len(counts) > 2 and sum(n for _, n, _ in counts) == 21
  assert [before for before, _, _ in counts] == list(
    np.cumsum([0] + [n for _, n, _ in counts[:-1]])
  )
  assert 'Few-label standard/mlp head' in caplog.text
  assert 'L-BFGS iterations' in caplog.text
  monkeypatch.setattr(classifiers, 'fit_batch', real_fit_batch)
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
  )
  np.testing.assert_allclose(
    r['mlp']['test_proba'], plain['test_proba'], atol=1e-5
  )
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
