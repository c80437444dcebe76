"""A Hydra callback that ends every multirun with the Markdown table of its runs.

Hydra calls `on_multirun_end` only when every job returned: a job that raised makes the sweeper
re-raise once the batch is done, and the multirun ends without it. So a failed job also writes
`<sweep dir>/table.md` of the runs finished so far, and every later job of the same process
rewrites it; a sweep whose jobs all return writes and prints it at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from seqbench.records import FINISHED, find_records, load_record, write_text_atomic
from seqbench.report.table import markdown_table

TABLE_NAME = "table.md"


def _is_multirun(config: DictConfig) -> bool:
    mode = OmegaConf.select(config, "hydra.mode", default=None)
    return getattr(mode, "name", mode) == "MULTIRUN"


class SweepTable(Callback):
    """Write the sweep's table to `<sweep dir>/table.md` (and print it when the sweep ends).

    The table is of the completed and diverged runs; failed and running ones are left out, a
    malformed or unreadable record is skipped with one warning. Writing the table never raises: a
    problem is one warning line and the sweep's own outcome stands.
    """

    def __init__(self) -> None:
        self.failed = False  # a job of this process failed: keep the table current
        self.warned: set[str] = set()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        self.failed = self.failed or job_return.status == JobStatus.FAILED
        if self.failed:
            self.write_table(config, announce=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.write_table(config, announce=True)

    def write_table(self, config: DictConfig, announce: bool) -> Path | None:
        """Write the table of the sweep folder's finished runs; return its path (None: no table,
        because the folder holds no finished run or the table could not be written)."""
        try:
            sweep_dir = Path(config.hydra.sweep.dir)
            if not sweep_dir.is_dir():
                return None
            records = []
            for path in find_records(sweep_dir):
                try:
                    records.append(load_record(path))
                except (OSError, ValueError) as error:
                    self.warn(f"skipping {error}")
            finished = [r for r in records if r.status in FINISHED]
            if not finished:
                if announce:
                    self.warn(f"no finished run in {sweep_dir}: no {TABLE_NAME} written")
                return None
            table = markdown_table(finished)
            out = sweep_dir / TABLE_NAME
            write_text_atomic(out, table + "\n")
        except Exception as error:
            self.warn(f"could not write the sweep table: {type(error).__name__}: {error}")
            return None
        if announce:
            print(f"\n{table}\n\n(table written to {out})", file=sys.stdout)
        return out

    def warn(self, message: str) -> None:
        """Print `seqbench: warning: <message>` on stderr, once per message."""
        if message not in self.warned:
            self.warned.add(message)
            print(f"seqbench: warning: {message}", file=sys.stderr)
