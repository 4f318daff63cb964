"""One grammar of backbone names for checkpoints, baselines, recognize and
init_from."""

import pytest

from sspr_jax.evaluate import backbone_names as names


@pytest.fixture
def run(tmp_path):
  """A workdir with steps 4 and 12 saved (folders only: parse reads none)."""
  for step in ('4', '12', '12.orbax-checkpoint-tmp-0'):
    (tmp_path / 'run' / 'checkpoints' / step).mkdir(parents=True)
  return tmp_path / 'run'


def test_a_run_its_checkpoints_folder_and_a_step(run):
  for text in (str(run), str(run / 'checkpoints')):
    name = names.parse(text)
    assert (name.kind, name.run, name.steps) == ('run', str(run), (12,))
  assert names.parse(str(run), all_steps=True).steps == (4, 12)
  assert names.parse(str(run / 'checkpoints' / '4')).steps == (4,)
  with pytest.raises(FileNotFoundError, match='No checkpoint folder'):
    names.parse(str(run / 'checkpoints' / '8'))
  (run / 'model.pth').write_text('')
  with pytest.raises(NotADirectoryError, match='is a file'):
    names.parse(str(run / 'model.pth'))


def test_baselines():
  assert names.parse('random').kind == 'random'
  assert names.parse('pixels').arg == '16'
  assert names.parse('pixels:32').arg == '32'
  lite = names.parse('imagenet_efficientnet_lite0')
  assert (lite.kind, lite.arg, lite.path) == (
    'imagenet',
    'efficientnet_lite0',
    None,
  )
  resnet = names.parse('imagenet_resnet50:/w/resnet50.pth')
  assert (resnet.arg, resnet.path) == ('resnet50', '/w/resnet50.pth')
  assert names.architecture(resnet)['backbone'] == 'resnet50'
  assert names.architecture(names.parse('pixels')) is None


@pytest.mark.parametrize(
  'text',
  ['imagenet', 'imagenet_resnet50', 'imagenet_vgg16:/x.pth', 'supervised'],
)
def test_unknown_names_list_the_valid_forms(text):
  with pytest.raises(
    ValueError, match="valid: a pre-training workdir.*'random'"
  ):
    names.parse(text)


def test_a_bad_pixels_side():
  with pytest.raises(ValueError, match='positive integer'):
    names.parse('pixels:0')


def test_each_use_allows_its_kinds(run):
  init_from = ('run', 'imagenet')
  assert names.parse(str(run), kinds=init_from).kind == 'run'
  for text in ('random', 'pixels:8'):
    with pytest.raises(ValueError) as e:
      names.parse(text, kinds=init_from)
    assert "'random'" not in str(e.value)  # Only the forms it allows.
    assert 'imagenet_efficientnet_lite0' in str(e.value)
  # A baseline list does not take paths: a folder named 'random' is a name.
  with pytest.raises(ValueError, match='Unknown baseline'):
    names.parse(str(run), kinds=names.BASELINE_KINDS)
