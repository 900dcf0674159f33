"""Example sources: BIG-bench JSON, JSONL/CSV/Parquet with field mapping, Flan CoT TSV, HF datasets."""
from .files import read_rows, rows_to_examples, FileSource, CotTsvSource  # noqa: F401
from .bigbench import BigBenchSource, list_bigbench_tasks, bigbench_task, BBH_SOURCE_TASKS  # noqa: F401
from .hf import HFSource  # noqa: F401
