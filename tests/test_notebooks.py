"One pytest item per notebook, run by nbdev's own test runner (honours `#| slow`, `#| eval: false`, skip_exec)."
from pathlib import Path
import os, pytest
import nbdev.test as nbtest
from nbdev.config import get_config

NBS = Path(get_config().nbs_path)
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb')
                   if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_notebook(nb):
    "Execute the notebook's cells in order; any failing cell fails the item."
    os.environ.setdefault('IN_TEST', '1')
    ok, secs = nbtest.test_nb(nb, skip_flags=get_config().tst_flags.split(), basepath=NBS, do_print=False)
    assert ok, f'{nb.name} failed (see output above)'
