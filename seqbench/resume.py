"""Finding an earlier run of the same job: to continue it from its checkpoint, or to skip it.

Two runs are the same job when their configs compute the same thing (`config_identity`, which
ignores names, tags, logging and paths) and train the same seeds. With `resume=dir` (the default)
only the job's own output folder is looked at, which is what re-running a command with a fixed
`hydra.run.dir`, or a multirun with a fixed `hydra.sweep.dir`, gives; `resume=auto` also searches
`paths.outputs` for the latest run of the job, so the same command line with Hydra's timestamped
folders picks up where it stopped; `resume=never` refuses a folder that already holds a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.records import (
    FINISHED,
    RECORD_NAME,
    RunRecord,
    config_identity,
    find_records,
    load_record,
)


class ResumeError(ValueError):
    """The output folder holds a run that cannot be continued by this job (one line)."""


def job_key(config: dict[str, Any], seeds: list[int]) -> tuple[str, tuple[int, ...]]:
    return config_identity(config), tuple(seeds)


def _job_key(record: RunRecord) -> tuple[str, tuple[int, ...]]:
    return job_key(record.config, record.seeds)


def previous_run(
    output_dir: Path, config: dict[str, Any], seeds: list[int], mode: str, outputs_root: Path
) -> tuple[Path, RunRecord] | None:
    """(folder, record) of the earlier run this job should continue or skip, or None (start anew).

    Raises ResumeError when `output_dir` holds a run of another job, or any run with mode "never".
    """
    key = job_key(config, seeds)
    own = Path(output_dir) / RECORD_NAME
    if own.is_file():
        try:
            record = load_record(own)
        except ValueError as error:
            raise ResumeError(f"{error}; move it away or choose another output directory") from None
        if mode == "never":
            raise ResumeError(
                f"output directory {output_dir} already holds a run ({record.status}); "
                "resume=dir continues or skips it"
            )
        if _job_key(record) != key:
            raise ResumeError(
                f"output directory {output_dir} holds a run of another configuration; "
                "choose another output directory (nothing was changed)"
            )
        return Path(output_dir), record
    if mode != "auto" or not Path(outputs_root).is_dir():
        return None
    candidates = []
    for path in find_records(Path(outputs_root)):
        if path.parent.resolve() == Path(output_dir).resolve():
            continue
        try:
            record = load_record(path)
        except ValueError:
            continue
        if record.status == "failed" and not (path.parent / "checkpoints").is_dir():
            continue
        if _job_key(record) == key:
            finished = record.status in FINISHED
            candidates.append((finished, record.started or "", path.parent, record))
    if not candidates:
        return None
    _, _, folder, record = max(candidates, key=lambda c: (c[0], c[1]))  # finished first, latest
    return folder, record
