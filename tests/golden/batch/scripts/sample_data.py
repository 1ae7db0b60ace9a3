"""Write the sample input data set: rows like the model's sample row, with reproducible noise.

Usage: python scripts/sample_data.py [OUTPUT_FOLDER] [--rows N] [--bad-every K]

Every run with the same arguments writes the same rows (a fixed seed). One row in ``--bad-every``
has a missing or non-finite value, so the job's rejects have something to show. The rows are
spread over several Parquet files, so Spark reads them as several partitions.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.app.config import PROJECT_ROOT
from src.batch.settings import COLUMN_TYPES, ID_COLUMN, sample_row

FILES = 4
SEED = 20240601
OURS = re.compile(r"part-[0-9]{2}\.parquet")


def column(name: str, base: Any, rows: int, rng: np.random.Generator) -> pa.Array:
    kind = COLUMN_TYPES[name]
    if kind == "string":
        return pa.array(np.full(rows, str(base), dtype=object), type=pa.string())
    if kind == "boolean":
        return pa.array(rng.random(rows) < 0.5)
    noisy = float(base) + rng.normal(0, abs(float(base)) * 0.5 + 0.5, rows)
    if kind in ("float", "double"):
        return pa.array(noisy.astype(np.float32 if kind == "float" else np.float64))
    return pa.array(np.rint(np.clip(noisy, 0, None)).astype(np.int64)).cast(
        pa.from_numpy_dtype(
            {"tinyint": np.int8, "smallint": np.int16, "int": np.int32, "bigint": np.int64}[kind]
        )
    )


def spoil(table: pa.Table, bad_every: int) -> pa.Table:
    """Blank out the first input column of every ``bad_every``-th row."""
    name = next(iter(COLUMN_TYPES))
    values = table.column(name).to_pylist()
    for index in range(bad_every - 1, len(values), bad_every):
        values[index] = None
    return table.set_column(
        table.schema.get_field_index(name), name, pa.array(values, table.schema.field(name).type)
    )


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("output", nargs="?", type=Path, default=PROJECT_ROOT / "data" / "input")
    cli.add_argument("--rows", type=int, default=200000)
    cli.add_argument("--bad-every", type=int, default=1000)
    args = cli.parse_args(argv)
    rng = np.random.default_rng(SEED)
    columns = {ID_COLUMN: pa.array(np.arange(args.rows, dtype=np.int64))}
    for name, base in sample_row().items():
        columns[name] = column(name, base, args.rows, rng)
    table = pa.table(columns)
    if args.bad_every:
        table = spoil(table, args.bad_every)
    strangers = [path.name for path in args.output.glob("*") if not OURS.fullmatch(path.name)]
    if strangers:
        print(
            f"{args.output}: holds files this script did not write ({strangers[0]}, ...); "
            "give another folder",
            file=sys.stderr,
        )
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    step = -(-args.rows // FILES)
    for part in range(FILES):
        chunk = table.slice(part * step, step)
        pq.write_table(chunk, args.output / f"part-{part:02d}.parquet", row_group_size=50000)
    print(f"{args.rows} rows in {FILES} files under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
