"""Writes constraints.txt: the installed versions of sspr_jax's dependencies.

    pip install -e '.[test]' && python tools/write_constraints.py

The README's and CI's installs use the file (`pip install -c
constraints.txt ...`), so the figures in the README and benchmarks/RESULTS.md
are reproduced with the versions they were measured with. pyproject.toml
keeps lower bounds only, for installs into other environments. The closure
is sspr_jax's requirements with the `test` and `imagenet` extras, followed
through the installed distributions (markers evaluated here: Python 3.11,
Linux x86-64).
"""

import importlib.metadata as metadata
import os
import re
import sys

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, 'constraints.txt')
EXTRAS = ('test', 'imagenet')


def canonical(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


def closure(root: str = 'sspr_jax', extras=EXTRAS) -> dict[str, str]:
  """{canonical name: installed version} of everything `root` needs."""
  pins, todo, seen = {}, [(root, tuple(extras))], set()
  while todo:
    name, wanted = todo.pop()
    # A distribution is followed once per set of extras asked of it.
    if (canonical(name), wanted) in seen:
      continue
    seen.add((canonical(name), wanted))
    dist = metadata.distribution(name)
    for text in dist.requires or ():
      req = Requirement(text)
      active = any(
        req.marker is None or req.marker.evaluate({'extra': e})
        for e in wanted or ('',)
      )
      if not active:
        continue
      pins[canonical(req.name)] = metadata.version(req.name)
      todo.append((req.name, tuple(sorted(req.extras))))
  pins.pop(canonical(root), None)
  return dict(sorted(pins.items()))


def main() -> None:
  pins = closure()
  header = (
    '# The versions the README and benchmarks/RESULTS.md were measured with\n'
    f'# (Python {sys.version_info.major}.{sys.version_info.minor}, Linux '
    'x86-64). Regenerate: python tools/write_constraints.py\n'
  )
  with open(PATH, 'w') as f:
    f.write(header + ''.join(f'{k}=={v}\n' for k, v in pins.items()))
  print(f'Wrote {len(pins)} pins to {PATH}.')


if __name__ == '__main__':
  main()
