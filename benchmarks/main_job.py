"""What the benchmarks that measure the main job share: its config file and its mixture, built small."""
from pathlib import Path

MAIN = Path(__file__).resolve().parents[1] / "src" / "flanlab" / "jobs" / "main.yaml"


def build_main_mixture(out: Path, examples: int, tokenizer: str, max_input_len: int | None = None) -> Path:
    """The main job's mix section (the offline Flan 2022 collection at the paper's rates), `examples` records long,
    lengths in `tokenizer`'s tokens, written to `out`."""
    from flanlab.config import read_section, validate
    from flanlab.mixture import MixConfig, build_mixture
    data, sec = read_section(MAIN, "mix")
    mix = validate(MixConfig, data, file=MAIN, prefix=sec)
    mix.total_examples, mix.output, mix.tokenizer = examples, str(out), tokenizer
    if max_input_len is not None:
        mix.max_input_len = max_input_len
    build_mixture(mix, progress=False, base=MAIN.parent)
    return out
