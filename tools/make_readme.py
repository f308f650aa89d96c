"""Write README.md from nbs/index.ipynb (a stand-in for `nbdev_readme`, which needs Quarto).

nbdev's own doc processors (hide `#| hide` cells, strip directives, render `show_doc`) run on the
committed notebook, whose outputs are kept, so nothing executes here; nbconvert turns it into Markdown.
"""
from pathlib import Path
import tempfile, yaml
import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from nbdev.config import get_config
from nbdev.serve import FilterDefaults
from nbdev.serve_drv import exec_nb

def make_readme(nb='index.ipynb', out='README.md'):
    "Render `nbs/<nb>` to `<out>` at the repository root; returns the output path."
    cfg = get_config()
    with tempfile.TemporaryDirectory() as tmp:
        processed = Path(tmp) / nb
        exec_nb(cfg.nbs_path / nb, processed, FilterDefaults)
        body, resources = _exporter().from_notebook_node(_tag_echo_false(nbformat.read(processed, as_version=4)))
    dest = cfg.config_path / out
    for name, data in resources.get('outputs', {}).items():  # images from cell outputs
        (cfg.config_path / 'figures' / name).write_bytes(data)
        body = body.replace(name, f'figures/{name}')
    body = body.replace('](../figures/', '](figures/')        # links written for nbs/ point at the repository root
    dest.write_text(_title_block(body).strip() + '\n')
    return dest

def _tag_echo_false(nb):
    "Tag cells marked `#| echo: false` (Quarto would hide their code) so the exporter drops their input."
    for cell in nb.cells:
        if cell.cell_type == 'code' and '#| echo: false' in cell.source:
            cell.metadata.setdefault('tags', []).append('hide-input')
    return nb

def _exporter() -> MarkdownExporter:
    "A Markdown exporter that shows only the output of `hide-input` cells."
    exporter = MarkdownExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'hide-input'}), enabled=True)
    return exporter

def _title_block(md: str) -> str:
    "Replace the Quarto front matter nbdev produces by a Markdown title and summary line."
    if not md.startswith('---'): return md
    _, front, rest = md.split('---', 2)
    meta = yaml.safe_load(front)
    return f"# {meta['title']}\n\n> {meta.get('description', '')}\n" + rest

if __name__ == '__main__': print(f'wrote {make_readme()}')
