"""The README's quoted numbers are the committed records' (experiments/readme_numbers.py)."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location(
        "readme_numbers", REPO / "experiments" / "readme_numbers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_blocks_are_rendered_from_the_committed_records(monkeypatch):
    script = load_script()
    monkeypatch.chdir(REPO)
    text = (REPO / "README.md").read_text()
    meta = json.loads(script.META.read_text())
    rendered = script.render_readme(text, meta)
    assert rendered == text, "README.md is out of date: run experiments/readme_numbers.py"
    for name in script.RENDERERS:
        assert f"<!-- readme_numbers:{name} -->" in text


def test_a_changed_record_is_caught(monkeypatch, tmp_path):
    script = load_script()
    monkeypatch.chdir(REPO)
    copy = tmp_path / "default_benchmark"
    for record in script.BENCH_DIR.rglob("run.json"):
        target = copy / record.relative_to(script.BENCH_DIR)
        target.parent.mkdir(parents=True)
        data = json.loads(record.read_text())
        for seed in data.get("per_seed") or []:
            for key in seed["best"] or {}:
                seed["best"][key] *= 1.5
        target.write_text(json.dumps(data))
    monkeypatch.setattr(script, "BENCH_DIR", copy)
    monkeypatch.setattr(script, "relative", lambda path: str(path))
    text = (REPO / "README.md").read_text()
    meta = json.loads(script.META.read_text())
    assert script.render_readme(text, meta) != text
