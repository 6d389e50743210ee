"""Keeping another profile's finished run beside the default one (`personalign archive-study`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from personalign.pipeline.cli import main
from personalign.pipeline.study_archive import MAX_RESULT_BYTES, archive_study

LOCK = """schema: '2.0'
stages:
  generate_judge:
    outs:
    - path: notebooks/rendered/05_generate_judge.ipynb
    - path: figures/table_whose_boat.md
    - path: figures/analysis
    - path: results/generate_judge
  score:
    outs:
    - path: results/scores/examples.csv
  train@dpo:
    outs:
    - path: notebooks/rendered/03_train/dpo.ipynb
  train@mt_tag_f0:
    outs:
    - path: notebooks/rendered/03_train/mt_tag_f0.ipynb
    - path: figures/train/mt_tag_f0.png
"""


def workspace(root: Path, profile: str = "persona_tailoring") -> Path:
    files = {
        "params.yaml": f"base:\n  profile: {profile}\ntrain:\n  runs:\n    dpo: {{kind: dpo}}\n",
        "dvc.lock": LOCK,
        "data/dataset_card.md": "# card\n",
        "notebooks/rendered/05_generate_judge.ipynb": "{}",
        "notebooks/rendered/03_train/dpo.ipynb": "{}",
        "figures/table_whose_boat.md": "| a |\n",
        "figures/analysis/whose_boat_ci.png": "png",
        "results/generate_judge/whose_boat.csv": "setting\n",
        "results/scores/examples.csv": "x" * (MAX_RESULT_BYTES + 1),
        "figures/train/mt_tag_f0.png": "the clone's: DVC keeps the lock entry of a run params.yaml dropped",
        "notebooks/rendered/03_train/mt_tag_f0.ipynb": "{}",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_study_is_copied_as_written_and_large_results_are_listed(tmp_path):
    run, repo = workspace(tmp_path / "run"), tmp_path / "repo"
    (repo / "figures/studies/persona_tailoring/stale.md").parent.mkdir(parents=True)
    (repo / "figures/studies/persona_tailoring/stale.md").write_text("old")
    left_out = archive_study(run, repo, "persona_tailoring")
    study = repo / "figures/studies/persona_tailoring"
    assert sorted(str(p.relative_to(study)) for p in study.rglob("*") if p.is_file()) == [
        "dataset_card.md",
        "dvc.lock",
        "figures/analysis/whose_boat_ci.png",
        "figures/table_whose_boat.md",
        "params.yaml",
        "results/generate_judge/whose_boat.csv",
    ]
    assert (repo / "notebooks/rendered/studies/persona_tailoring/03_train/dpo.ipynb").is_file()
    assert not (repo / "notebooks/rendered/studies/persona_tailoring/03_train/mt_tag_f0.ipynb").exists()
    assert left_out == [f"results/scores/examples.csv ({MAX_RESULT_BYTES + 1} bytes)"]


def test_a_workspace_of_another_profile_is_refused(tmp_path, monkeypatch, capsys):
    run = workspace(tmp_path / "run", profile="default")
    with pytest.raises(ValueError, match="base.profile is 'default', not 'persona_tailoring'"):
        archive_study(run, tmp_path / "repo", "persona_tailoring")
    monkeypatch.chdir(tmp_path)
    assert main(["archive-study", str(run), "persona_tailoring"]) == 2
    assert "not 'persona_tailoring'" in capsys.readouterr().err
