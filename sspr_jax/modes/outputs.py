"""The 'Wrote:' block each mode prints at its end: what it wrote, where."""

import os

import jax


def wrote(items) -> str:
  """The block for (what, path[, note]) items, absolute paths aligned."""
  items = [tuple(item) + ('',) * (3 - len(item)) for item in items]
  width = max((len(what) for what, _, _ in items), default=0)
  lines = ['Wrote:']
  for what, path, note in items:
    line = f'  {what:<{width}}  {os.path.abspath(path)}'
    lines.append(f'{line}  ({note})' if note else line)
  return '\n'.join(lines)


def print_wrote(items) -> None:
  """Prints `wrote(items)` from process 0 (the one that writes the files)."""
  if jax.process_index() == 0:
    print(wrote(items), flush=True)
