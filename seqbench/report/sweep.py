"""A Hydra callback that ends every multirun with the Markdown table of its runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seqbench.records import find_records, load_record
from seqbench.report.table import markdown_table


class SweepTable(Callback):
    """On multirun end: print the sweep's table and write it to `<sweep dir>/table.md`."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        records = [load_record(p) for p in find_records(sweep_dir)]
        if not records:
            return
        table = markdown_table(records)
        (sweep_dir / "table.md").write_text(table + "\n")
        print(f"\n{table}\n\n(table written to {sweep_dir / 'table.md'})", file=sys.stdout)
